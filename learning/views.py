"""Server-rendered pages of the knowledge base."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from learning import selectors


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "learning/home.html", {"counts": selectors.catalog_counts(user=request.user)})
