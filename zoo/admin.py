from django.contrib import admin

from zoo.models import (
    CalibrationGalaxy,
    ConsensusInclination,
    ConsensusOverride,
    InclinationVote,
    Standard,
    Volunteer,
    VolunteerCalibration,
    VoteRound,
)


@admin.register(InclinationVote)
class InclinationVoteAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "user", "inc", "rejected", "face_on", "kind", "source", "round", "created")
    list_filter = ("kind", "source", "rejected", "face_on", "not_sure", "round")
    search_fields = ("=galaxy__pgc", "user__username", "note")
    raw_id_fields = ("galaxy", "user")

    def has_change_permission(self, request, obj=None):
        return False  # votes are append-only


@admin.register(Volunteer)
class VolunteerAdmin(admin.ModelAdmin):
    list_display = ("pseudonym", "user", "imported", "created")
    list_filter = ("imported",)
    search_fields = ("pseudonym", "user__username")


@admin.register(Standard)
class StandardAdmin(admin.ModelAdmin):
    list_display = ("id", "galaxy", "inc", "flag", "rendered", "variant", "image", "source")
    list_filter = ("flag", "rendered")
    search_fields = ("=galaxy__pgc",)
    raw_id_fields = ("galaxy", "image")


@admin.register(CalibrationGalaxy)
class CalibrationGalaxyAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "inc", "flag", "source")
    list_filter = ("flag",)
    search_fields = ("=galaxy__pgc",)
    raw_id_fields = ("galaxy",)


@admin.register(VoteRound)
class VoteRoundAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "round", "opened_by", "reason", "created")
    search_fields = ("=galaxy__pgc",)
    raw_id_fields = ("galaxy", "opened_by")


@admin.register(ConsensusInclination)
class ConsensusInclinationAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "inc", "inc_e", "inc_n", "flag", "method", "version", "overridden_by", "computed")
    list_filter = ("flag", "method", "version")
    search_fields = ("=galaxy__pgc",)
    raw_id_fields = ("galaxy", "overridden_by")

    def has_change_permission(self, request, obj=None):
        return False  # recomputed by the consensus task, never by hand: curators add overrides


@admin.register(ConsensusOverride)
class ConsensusOverrideAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "inc", "inc_e", "flag", "curator", "reason", "created")
    list_filter = ("flag",)
    search_fields = ("=galaxy__pgc", "reason")
    raw_id_fields = ("galaxy", "curator")


@admin.register(VolunteerCalibration)
class VolunteerCalibrationAdmin(admin.ModelAdmin):
    list_display = ("user", "a", "b", "sigma", "n_votes", "method", "version", "computed")
    list_filter = ("method",)
    search_fields = ("user__username",)
    raw_id_fields = ("user",)
