from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

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
