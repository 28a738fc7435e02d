import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the local 'admin' superuser when missing and print its login (password in var/admin_password.txt)."

    def handle(self, *args, **opts):
        User = get_user_model()
        path = settings.BASE_DIR / "var" / "admin_password.txt"
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
