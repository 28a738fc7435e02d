from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from accounts import security  # noqa: F401  (connects the signals: token revocation,
        from core import login_throttle  # noqa: F401  and the counting of failed logins)
