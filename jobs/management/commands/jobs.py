"""`manage.py jobs`: list, show, watch, cancel and retry jobs from a terminal; queue a demo."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from core.progress import ProgressBar
from jobs.models import Job
from jobs.services import JobError, cancel_job, mark_lost_jobs, retry_job, wait_for_job


class Command(BaseCommand):
    help = "Background jobs: list, show, watch (progress bar), cancel, retry; `demo N` queues a synthetic batch job."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        ls = sub.add_parser("list", help="recent jobs")
        ls.add_argument("--kind")
        ls.add_argument("--status", choices=Job.Status.values + ["active"])
        ls.add_argument("--limit", type=int, default=20)
        for name in ("show", "cancel", "retry"):
            p = sub.add_parser(name, help=f"{name} one job")
            p.add_argument("job_id", type=int)
        w = sub.add_parser("watch", help="follow a job with a progress bar until it ends")
        w.add_argument("job_id", type=int)
        w.add_argument("--timeout", type=float, help="stop watching after this many seconds")
        d = sub.add_parser("demo", help="queue a demo batch job of N items (squares, one row per item)")
        d.add_argument("items", type=int)
        d.add_argument("--batch-size", type=int, default=100)
        d.add_argument("--delay", type=float, default=0.0, help="seconds per item")
        d.add_argument("--watch", action="store_true", help="then follow it")

    def handle(self, *args, **opts):
        action = opts["action"]
        try:
            return getattr(self, f"do_{action}")(opts)
        except Job.DoesNotExist:
            raise CommandError(f"no job {opts.get('job_id')}") from None
        except (JobError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None

    def do_list(self, opts):
        mark_lost_jobs()
        qs = Job.objects.select_related("created_by")
        if opts["kind"]:
            qs = qs.filter(kind=opts["kind"])
        if opts["status"] == "active":
            qs = qs.filter(status__in=Job.ACTIVE)
        elif opts["status"]:
            qs = qs.filter(status=opts["status"])
        self.stdout.write(f"{'id':>6}  {'kind':<22} {'status':<10} {'progress':>17}  {'created':<19}  message")
        for job in qs[: opts["limit"]]:
            pct = f"{100 * job.done / job.total:5.1f}%" if job.total else "    -"
            progress = f"{job.done}/{job.total} {pct}"
            self.stdout.write(
                f"{job.pk:>6}  {job.kind:<22} {job.status:<10} {progress:>17}  {job.created:%Y-%m-%d %H:%M:%S}  {job.message[:60]}"
            )

    def do_show(self, opts):
        mark_lost_jobs()
        job = Job.objects.get(pk=opts["job_id"])
        for field in (
            "kind",
            "status",
            "queue",
            "done",
            "total",
            "attempts",
            "worker",
            "created",
            "started",
            "finished",
            "heartbeat",
            "message",
        ):
            self.stdout.write(f"{field:>10}: {getattr(job, field)}")
        if job.error:
            self.stdout.write(f"     error:\n{job.error}")
        if job.log_tail:
            self.stdout.write(f"       log:\n{job.log_tail}")

    def do_cancel(self, opts):
        job = cancel_job(opts["job_id"], None, system=True)
        self.stdout.write(self.style.SUCCESS(f"job {job.pk}: {job.status}, {job.message}"))

    def do_retry(self, opts):
        job = retry_job(opts["job_id"], None, system=True)
        self.stdout.write(self.style.SUCCESS(f"job {job.pk}: {job.status}, {job.message}"))

    def do_watch(self, opts):
        job = Job.objects.get(pk=opts["job_id"])
        with ProgressBar(f"job {job.pk} {job.kind}", disable=opts["verbosity"] == 0) as bar:
            job = wait_for_job(job.pk, timeout=opts["timeout"], on_progress=bar)
        style = self.style.SUCCESS if job.status == Job.Status.SUCCEEDED else self.style.WARNING
        self.stdout.write(style(f"job {job.pk}: {job.status} ({job.done}/{job.total}) {job.message}"))
        if job.status in (Job.Status.FAILED, Job.Status.LOST):
            raise CommandError(job.error or job.message)

    def do_demo(self, opts):
        from jobs.tasks import demo_job

        job = demo_job(opts["items"], batch_size=opts["batch_size"], delay=opts["delay"])
        self.stdout.write(f"queued job {job.pk}: {job.message} (see /jobs/{job.pk}/)")
        if opts["watch"]:
            self.do_watch({"job_id": job.pk, "timeout": None, "verbosity": opts["verbosity"]})
