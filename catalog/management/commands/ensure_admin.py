import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from catalog.conf import conf


class Command(BaseCommand):
    help = "Create the local 'admin' superuser when missing and print its login (password in GALCAT_VAR_DIR/admin_password.txt)."

    def handle(self, *args, **opts):
        User = get_user_model()
        path = Path(conf.VAR_DIR) / "admin_password.txt"
        password = os.environ.get("GALCAT_ADMIN_PASSWORD") or (path.read_text().strip() if path.exists() else "")
        user = User.objects.filter(username="admin").first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", password)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(password + "\n")
            path.chmod(0o600)
        elif not password:
            self.stdout.write("admin login: user 'admin' (password set earlier; reset with `manage.py changepassword admin`)")
            return
        self.stdout.write(f"admin login: user 'admin', password '{password}'")
