from django.contrib import admin

from fitting.models import FitResult


@admin.register(FitResult)
class FitResultAdmin(admin.ModelAdmin):
    list_display = ("id", "image", "model_kind", "engine_version", "q", "n", "re", "converged", "reason", "device", "created")
    list_filter = ("model_kind", "engine_version", "converged", "device")
    search_fields = ("image__galaxy__pgc", "reason")
    raw_id_fields = ("image",)
    readonly_fields = ("created", "updated")
