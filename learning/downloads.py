"""Downloads of a model, the same from the pages and the API: its weights and its model card."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse

from learning.artifacts import artifact_storage
from learning.model_card import model_card_markdown, weights_filename
from learning.models import MetaModel, Visibility


def _cache_control(model: MetaModel) -> str:
    # A private model's files must not sit in shared caches.
    return "max-age=3600" if model.visibility == Visibility.PUBLIC else "private, max-age=3600"


def weights_response(model: MetaModel) -> FileResponse:
    """The model's safetensors file, streamed from artifact storage as an attachment, with its sha256."""
    if not model.weights_file:
        raise Http404(f"model {model.pk} has no weights")
    response = FileResponse(
        artifact_storage().open(model.weights_file, "rb"),
        as_attachment=True,
        filename=weights_filename(model),
        content_type="application/octet-stream",
    )
    response["X-Content-SHA256"] = model.weights_sha256
    response["Cache-Control"] = _cache_control(model)
    return response


def card_response(request: HttpRequest, model: MetaModel) -> HttpResponse:
    """The model card as a markdown file (``model-<id>-card.md``) with what ``request.user`` may see."""
    base_url = request.build_absolute_uri("/").rstrip("/")
    card = model_card_markdown(user=request.user, model=model, base_url=base_url)
    response = HttpResponse(card, content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="model-{model.pk}-card.md"'
    response["Cache-Control"] = "private, no-cache"
    return response
