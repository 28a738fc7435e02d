from django.contrib import admin, messages
from django.utils import timezone

from catalog.forms import ImageAdminAddForm
from catalog.models import Galaxy, GalaxyName, Image, Release, ReleaseRow


class GalaxyNameInline(admin.TabularInline):
    model = GalaxyName
    extra = 0
    fields = ("name",)


@admin.action(description="Freeze the selected galaxies as a draft release")
def freeze_as_release(modeladmin, request, queryset):
    from catalog.releases import ReleaseError, make_release

    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    try:
        release = make_release(f"Selection by {request.user.username}", stamp, queryset=queryset, user=request.user)
    except ReleaseError as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    modeladmin.message_user(request, f"Draft release {release.slug} with {release.row_count} rows: rename and publish it under Releases.")


@admin.action(description="Publish the selected draft releases (freezes them for good)")
def publish_releases(modeladmin, request, queryset):
    from catalog.releases import ReleaseError, publish_release

    for release in queryset:
        try:
            publish_release(release)
            modeladmin.message_user(request, f"published {release}")
        except ReleaseError as exc:
            modeladmin.message_user(request, str(exc), messages.WARNING)


@admin.register(Galaxy)
class GalaxyAdmin(admin.ModelAdmin):
    actions = [freeze_as_release]
    list_display = ("pgc", "ra", "dec", "vhel", "d25", "b_a", "type", "inc", "inc_flg")
    list_filter = ("inc_flg", "sdss", "alfa100", "qa_sdss", "qa_wise", "fon", "dst")
    search_fields = ("=pgc", "names__normalised", "type", "note")
    readonly_fields = ("healpix", "created", "updated")
    inlines = [GalaxyNameInline]
    show_full_result_count = False


@admin.register(GalaxyName)
class GalaxyNameAdmin(admin.ModelAdmin):
    list_display = ("name", "galaxy", "normalised")
    search_fields = ("normalised", "name", "=galaxy__pgc")
    raw_id_fields = ("galaxy",)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "band", "survey", "format", "width", "height", "orientation", "inverted", "created")
    list_filter = ("band", "survey", "format", "orientation", "inverted", "is_public")
    search_fields = ("=galaxy__pgc", "sha256", "original_name")
    raw_id_fields = ("galaxy", "uploaded_by")
    readonly_fields = ("sha256", "created")
    add_form = ImageAdminAddForm

    def get_form(self, request, obj=None, change=False, **kwargs):
        """Adding: a file and what it cannot tell (ImageAdminAddForm); changing: the stored row."""
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (*self.readonly_fields, "file", "format", "width", "height", "channels")

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ("upload", "galaxy", "band", "survey", "pixel_scale", "orientation", "is_public")})]
        return super().get_fieldsets(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        image = form.store(request.user)  # validated, stored by content, fit and prediction queued
        obj.pk = image.pk
        obj.refresh_from_db()


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    actions = [publish_releases]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.is_published:  # published releases are immutable
            return [f.name for f in Release._meta.fields]
        return ("status", "row_count", "published_at", "query", "columns")

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.is_published)

    list_display = ("name", "version", "slug", "status", "is_public", "row_count", "created", "published_at")
    list_filter = ("status", "is_public")
    search_fields = ("name", "slug", "description")


@admin.register(ReleaseRow)
class ReleaseRowAdmin(admin.ModelAdmin):
    list_display = ("release", "galaxy")
    list_filter = ("release",)
    search_fields = ("=galaxy__pgc",)
    raw_id_fields = ("galaxy",)
