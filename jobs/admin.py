from django.contrib import admin

from jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "done", "total", "queue", "created_by", "created", "finished")
    list_filter = ("kind", "status", "queue")
    search_fields = ("kind", "message", "error")
    readonly_fields = ("created", "started", "finished", "heartbeat")
