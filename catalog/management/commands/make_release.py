from urllib.parse import parse_qsl

from django.core.management.base import BaseCommand, CommandError

from catalog.releases import ReleaseError, make_release
from jobs.services import tracked


class Command(BaseCommand):
    help = "Freeze the galaxies selected by a browse-page query (default: all with positions) as a named, versioned release."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="release name, e.g. 'CF4 candidates'")
        parser.add_argument("--release-version", "--ver", dest="release_version", required=True, help="version label, e.g. 1.0")
        parser.add_argument("--query", default="", help="browse-page filter parameters, e.g. 'inc_min=45&vhel_max=3000'")
        parser.add_argument("--columns", default="", help="comma-separated registry columns (default: all)")
        parser.add_argument("--description", default="")
        parser.add_argument("--citation", default="")
        parser.add_argument("--slug", default=None)
        parser.add_argument("--publish", action="store_true", help="publish (freeze for good) at once")
        parser.add_argument("--private", action="store_true", help="visible to members only")

    def handle(self, *args, **opts):
        query = dict(parse_qsl(opts["query"].lstrip("?"), keep_blank_values=False))
        params = {k: opts[k] for k in ("name", "release_version", "query", "columns", "publish", "private")}
        try:
            with tracked("make_release", params) as job:
                release = make_release(
                    opts["name"],
                    opts["release_version"],
                    query=query,
                    columns=opts["columns"] or None,
                    description=opts["description"],
                    citation=opts["citation"],
                    publish=opts["publish"],
                    is_public=not opts["private"],
                    slug=opts["slug"],
                )
                job.finish({"release": release.slug, "rows": release.row_count}, f"{release} with {release.row_count} rows")
        except ReleaseError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"release {release.slug}: {release.row_count} rows, {release.status}"))
