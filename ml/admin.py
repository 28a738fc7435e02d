from django.contrib import admin

from ml.models import ImageEmbedding, LatentDensity, ModelVersion, MorphologyPosterior, OutlierVerdict, Prediction


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


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "image", "model_version", "outlier_score", "recon_error", "created")
    list_filter = ("model_version",)
    search_fields = ("galaxy__pgc",)
    raw_id_fields = ("image", "galaxy")
    exclude = ("embedding",)  # a vector of floats: read it through the API or the ORM


@admin.register(LatentDensity)
class LatentDensityAdmin(admin.ModelAdmin):
    list_display = ("model_version", "images", "created")
    list_filter = ("model_version",)
    readonly_fields = ("state",)


@admin.register(OutlierVerdict)
class OutlierVerdictAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "image", "verdict", "outlier_score", "user", "created")
    list_filter = ("verdict",)
    search_fields = ("galaxy__pgc", "note")
    raw_id_fields = ("image", "galaxy", "user")
