"""A database made before the zoo and the job system left the catalog app migrates forward with
its rows intact: the models change app, the tables and rows stay where they are."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from jobs.models import Job
from zoo.models import ConsensusInclination, InclinationVote, Volunteer

NEW_APPS = ("jobs", "zoo")
CATALOG_BEFORE = ("catalog", "0005_release_immutable")  # the last catalog migration before the move


def _latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _before() -> list[tuple[str, str]]:
    """Every app at its latest migration but the catalog at 0005 and no jobs or zoo app: the
    schema before the move."""
    return [CATALOG_BEFORE] + [node for node in _latest() if node[0] not in (*NEW_APPS, "catalog")]


def _unapplied(app: str) -> bool:
    return not MigrationExecutor(connection).loader.applied_migrations.keys() & {n for n in _latest() if n[0] == app}


def _migrate(targets) -> MigrationExecutor:
    MigrationExecutor(connection).migrate(targets)
    return MigrationExecutor(connection)


@pytest.fixture
def old_schema_rows(transactional_db):
    """Rows written through the models as they were at catalog 0005 (votes, jobs, consensus in
    the catalog app); yields their ids and the content type ids of the moved models."""
    before = _before()
    old = _migrate(before + [(app, None) for app in NEW_APPS]).loader.project_state(before).apps
    assert all(_unapplied(app) for app in NEW_APPS)
    user = old.get_model("auth", "User").objects.create(username="old-volunteer")
    galaxy = old.get_model("catalog", "Galaxy").objects.create(pgc=4242)
    old.get_model("catalog", "Volunteer").objects.create(user=user, pseudonym="old-volunteer", imported=True)
    vote = old.get_model("catalog", "InclinationVote").objects.create(user=user, galaxy=galaxy, inc=63.5, not_sure=True)
    cons = old.get_model("catalog", "ConsensusInclination").objects.create(
        galaxy=galaxy, inc=63.0, inc_e=1.5, inc_n=3, flag="A", method="calibrated", version="1"
    )
    job = old.get_model("catalog", "Job").objects.create(kind="import_votes", params={"path": "votes.csv"}, done=5, total=5)
    types = old.get_model("contenttypes", "ContentType").objects
    type_ids = {name: types.get_or_create(app_label="catalog", model=name)[0].pk for name in ("inclinationvote", "job")}
    yield {"vote": vote.pk, "consensus": cons.pk, "job": job.pk, "types": type_ids}


def test_old_database_migrates_forward_with_rows_intact(old_schema_rows):
    _migrate(_latest())

    vote = InclinationVote.objects.get(pk=old_schema_rows["vote"])
    assert (vote.galaxy_id, vote.inc, vote.not_sure, vote.user.username) == (4242, 63.5, True, "old-volunteer")
    assert Volunteer.objects.get(user=vote.user).pseudonym == "old-volunteer"
    assert ConsensusInclination.objects.get(pk=old_schema_rows["consensus"]).inc == 63.0
    job = Job.objects.get(pk=old_schema_rows["job"])
    assert (job.kind, job.params, job.done) == ("import_votes", {"path": "votes.csv"}, 5)
    assert InclinationVote._meta.db_table == "catalog_inclinationvote" and Job._meta.db_table == "catalog_job"


def test_moved_models_keep_their_content_types(old_schema_rows):
    _migrate(_latest())

    ContentType.objects.clear_cache()
    assert ContentType.objects.get_for_model(InclinationVote).pk == old_schema_rows["types"]["inclinationvote"]
    assert ContentType.objects.get_for_model(Job).pk == old_schema_rows["types"]["job"]
    assert not ContentType.objects.filter(app_label="catalog", model__in=["inclinationvote", "job"]).exists()
