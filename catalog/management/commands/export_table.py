import sys
from urllib.parse import parse_qsl

from django import forms
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from catalog.exports import FORMATS, ExportError, stream_table
from catalog.models import Release
from catalog.releases import ReleaseError, query_queryset
from core.progress import ProgressBar
from jobs.services import tracked


class Command(BaseCommand):
    help = "Write a release or the result of a browse-page query as CSV, VOTable or FITS (streamed, constant memory)."

    def add_arguments(self, parser):
        parser.add_argument("--release", help="slug of the release to export")
        parser.add_argument("--query", default="", help="browse-page filter parameters, e.g. 'inc_min=45&vhel_max=3000'")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--columns", default="", help="comma-separated columns, or 'all' (default: the usual ones)")
        parser.add_argument("--output", "-o", default="-", help="output file ('-' for standard output)")

    def handle(self, *args, **opts):
        try:
            if opts["release"]:
                release = Release.objects.filter(slug=opts["release"]).first()
                if release is None:
                    raise CommandError(f"no release {opts['release']!r}")
                source, provenance = release, {}
            else:
                query = dict(parse_qsl(opts["query"].lstrip("?")))
                source = query_queryset(query)
                list_path = reverse("catalog:galaxy-list")
                provenance = {"query": f"{list_path}?{opts['query']}" if opts["query"] else "all galaxies with positions"}
            chunks = stream_table(source, opts["format"], opts["columns"] or None, provenance)
        except (ExportError, ReleaseError, forms.ValidationError) as exc:
            raise CommandError(str(exc)) from None
        out = sys.stdout.buffer if opts["output"] == "-" else open(opts["output"], "wb")  # noqa: SIM115
        written = 0
        params = {k: opts[k] for k in ("release", "query", "format", "columns", "output")}
        try:
            with (
                ProgressBar("export", disable=opts["verbosity"] == 0 or opts["output"] == "-") as bar,
                tracked("export_table", params) as job,
            ):
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
                    bar(written, 0)
                job.finish({"bytes": written, "output": opts["output"]}, f"wrote {written:,} bytes")
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        if opts["output"] != "-":
            self.stderr.write(f"wrote {written:,} bytes to {opts['output']}")
