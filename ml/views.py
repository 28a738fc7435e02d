from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ml.services import comparison_rows


def compare(request: HttpRequest) -> HttpResponse:
    """Scatter plots (plotly) of CNN vs consensus vs axis-ratio vs published inclinations."""
    data = comparison_rows()
    return render(request, "ml/compare.html", {"data": data, "n": len(data["pgc"])})
