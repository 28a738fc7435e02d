from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.forms import SignupForm
from accounts.services import calibration_points, create_volunteer, latest_votes, method_calibration, vote_statistics
from core.roles import role_of


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("accounts:profile")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = create_volunteer(form.cleaned_data["username"], form.cleaned_data["email"], form.cleaned_data["password1"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}: you can vote on inclinations now.")
        return redirect("zoo:vote")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    user = request.user
    page = Paginator(latest_votes(user).select_related("galaxy"), 50).get_page(request.GET.get("page"))
    calib = calibration_points(user)
    return render(
        request,
        "accounts/profile.html",
        {
            "page": page,
            "stats": vote_statistics(user),
            "calib": calib,
            "method_cal": method_calibration(user),
            "role": role_of(user) or "none",
        },
    )
