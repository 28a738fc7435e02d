from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm, UserCreationForm
from django.contrib.auth.tokens import default_token_generator
from django.template import loader

from core.login_throttle import client_ip, login_blocked
from zoo.models import Volunteer


class SignupForm(UserCreationForm):
    """A new volunteer: user name (also the public pseudonym), e-mail for password resets, password."""

    email = forms.EmailField(required=True, help_text="Only used to reset your password.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_username(self):
        name = super().clean_username()
        if Volunteer.objects.filter(pseudonym__iexact=name).exists():
            raise forms.ValidationError("This name is taken.")
        return name

    def clean_email(self):
        email = self.cleaned_data["email"].strip()
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this e-mail exists: reset its password instead.")
        return email


class ThrottledLoginForm(AuthenticationForm):
    """The login form, paused after repeated failures for the account or from the address."""

    def clean(self):
        if message := login_blocked(self.data.get("username"), client_ip(self.request)):
            raise forms.ValidationError(message, code="throttled")
        return super().clean()


class EvenPasswordResetForm(PasswordResetForm):
    """Password reset that does the same work whether or not the address has an account: for an
    unknown one a token is made and the mail rendered for a stand-in user, then not sent, so the
    answer's timing does not tell which addresses have accounts (the answer itself never did)."""

    def save(self, *args, email_template_name: str = "registration/password_reset_email.html", **kwargs):
        email = self.cleaned_data["email"]
        if not any(True for _ in self.get_users(email)):
            stand_in = get_user_model()(username="x", email=email)
            stand_in.set_unusable_password()
            context = {"email": email, "domain": "x", "site_name": "x", "uid": "x", "user": stand_in, "protocol": "https"}
            context["token"] = default_token_generator.make_token(stand_in)
            loader.render_to_string(email_template_name, context)
            return None
        return super().save(*args, email_template_name=email_template_name, **kwargs)
