from django.contrib import admin

from ml.models import ModelVersion, MorphologyPosterior, Prediction


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "active", "sha256", "created")
    list_filter = ("active", "name")
    search_fields = ("name", "version", "sha256")
    readonly_fields = ("sha256", "files", "card", "created")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "image", "model_version", "value", "uncertainty", "reject_likelihood", "axis_ratio_inc", "created")
    list_filter = ("model_version",)
    search_fields = ("galaxy__pgc",)
    raw_id_fields = ("image", "galaxy")


@admin.register(MorphologyPosterior)
class MorphologyPosteriorAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "image", "model_version", "kind", "re", "n", "q", "bt", "created")
    list_filter = ("model_version", "kind")
    search_fields = ("galaxy__pgc",)
    raw_id_fields = ("image", "galaxy")
