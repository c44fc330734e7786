"""Server-rendered pages of the knowledge base.

Views stay small: selectors read (always scoped to the user, so a private entry is a
404 to strangers), services write, forms validate, templates format.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import Prefetch, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from learning import heavy_work, predict_page, samples, selectors
from learning.artifacts import artifact_storage
from learning.compare import comparison
from learning.config_table import config_rows, engine_defaults
from learning.downloads import card_response, weights_response
from learning.errors import InvalidInput
from learning.forms import DomainFilterForm, DomainUploadForm, ModelFilterForm, SignUpForm
from learning.models import MetaModel, SourceDomain, Visibility
from learning.recommend import recommend_sources
from tasks_app import selectors as job_selectors
from tasks_app.imports import domain_upload_import
from tasks_app.models import Job

PAGE_SIZE = 20
RECENT = 5
THUMBNAILS_SHOWN = 48


def _refused(response: HttpResponse, err: heavy_work.HeavyWorkError) -> HttpResponse:
    """``response`` (the page, showing ``err``'s message) with ``err``'s status and ``Retry-After``."""
    response.status_code = err.status
    for name, value in err.headers.items():
        response[name] = value
    return response


def _page(request: HttpRequest, rows: QuerySet) -> Page:
    return Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))


def _with_visible_domains(models: QuerySet[MetaModel], user) -> QuerySet[MetaModel]:
    """Models with ``visible_domains``: the training domains the user may see (others stay unnamed)."""
    domains = Prefetch("trained_on", queryset=selectors.domain_list(user=user), to_attr="visible_domains")
    return models.prefetch_related(domains)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    return render(
        request,
        "learning/home.html",
        {
            "counts": selectors.catalog_counts(user=user),
            "recent_models": selectors.metamodel_list(user=user)[:RECENT],
            "recent_evaluations": selectors.evaluation_list(user=user)[:RECENT],
            "builtin_domains": selectors.domain_list(user=user).filter(origin=SourceDomain.Origin.BUILTIN),
            **(_dashboard(user) if user.is_authenticated else {}),
        },
    )


def _dashboard(user) -> dict:
    """The signed-in user's running jobs and the latest that ended, for the home page's panels."""
    jobs = job_selectors.job_list(user=user)
    return {
        "active_jobs": jobs.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])[:10],
        "ended_jobs": jobs.filter(status__in=Job.FINAL_STATUSES).order_by("-finished_at", "-id")[:6],
    }


@require_GET
def domain_list(request: HttpRequest) -> HttpResponse:
    form = DomainFilterForm(request.GET)
    page = _page(request, form.filter(selectors.domain_list(user=request.user)))
    return render(request, "learning/domain_list.html", {"form": form, "page": page})


@require_GET
def domain_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = request.user
    domain = selectors.domain_get(user=user, slug=slug)
    classes = Paginator(list(enumerate(domain.classes)) if domain.is_classification else [], THUMBNAILS_SHOWN)
    return render(
        request,
        "learning/domain_detail.html",
        {
            "domain": domain,
            "thumbnails": classes.get_page(request.GET.get("page")),
            "task_specs": selectors.task_spec_list(user=user).filter(domain=domain),
            "models": _with_visible_domains(
                selectors.metamodel_list(user=user).filter(trained_on=domain), user
            ),
        },
    )


@require_GET
def domain_thumbnail(request: HttpRequest, slug: str, index: int) -> FileResponse:
    """One class's thumbnail PNG, streamed from artifact storage; 404 unless the user may see the domain."""
    domain = selectors.domain_get(user=request.user, slug=slug)
    name = f"domains/{domain.slug}/thumbs/{index}.png"
    if index >= domain.class_count or not artifact_storage().exists(name):
        raise Http404(f"no thumbnail {index} for {slug!r}")
    response = FileResponse(artifact_storage().open(name, "rb"), content_type="image/png")
    # Private thumbnails must not sit in shared caches.
    response["Cache-Control"] = (
        "max-age=3600" if domain.visibility == Visibility.PUBLIC else "private, max-age=3600"
    )
    return response


@login_required
def domain_upload(request: HttpRequest) -> HttpResponse:
    """A small zip is imported at once (to the domain's page); a large one by a job (to the job's page)."""
    form = DomainUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            created = domain_upload_import(
                upload=data["source"],
                name=data["name"],
                owner=request.user,
                visibility=data["visibility"],
                description=data["description"],
                citation=data["citation"],
                license=data["license"],
            )
        except InvalidInput as err:
            form.add_service_error(err.field, err.message)
        except heavy_work.HeavyWorkError as err:
            form.add_service_error(None, err.message)
            return _refused(_upload_page(request, form), err)
        else:
            if isinstance(created, Job):
                messages.info(
                    request,
                    f"The archive is large, so it is imported by job {created.pk}, which runs in the "
                    "background; this page shows its progress, and links the domain once it is in.",
                )
                return redirect("job-detail", pk=created.pk)
            return redirect("domain-detail", slug=created.slug)
    return _upload_page(request, form)


def _upload_page(request: HttpRequest, form: DomainUploadForm) -> HttpResponse:
    """The form; 400 when it shows errors, so a refusal never reads as a success."""
    return render(
        request,
        "learning/domain_upload.html",
        {"form": form, "inline_max_bytes": settings.IMPORT_INLINE_MAX_BYTES},
        status=400 if form.errors else 200,
    )


@require_GET
def model_list(request: HttpRequest) -> HttpResponse:
    user = request.user
    models = selectors.metamodel_list_scored(user=user)
    form = ModelFilterForm(request.GET, models=models, domains=selectors.domain_list(user=user))
    page = _page(request, _with_visible_domains(form.filter(models), user))
    return render(request, "learning/model_list.html", {"form": form, "page": page})


@require_GET
def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    model = selectors.metamodel_get(user=user, pk=pk)
    return render(
        request,
        "learning/model_detail.html",
        {
            "model": model,
            "lineage": selectors.metamodel_lineage(user=user, model=model),
            "lineage_graph": selectors.metamodel_lineage_graph(user=user, model=model),
            "children": _with_visible_domains(selectors.metamodel_list(user=user).filter(parent=model), user),
            "trained_on": selectors.domain_list(user=user).filter(models=model),
            "task_spec": selectors.task_spec_list(user=user).filter(pk=model.task_spec_id).first(),
            "evaluations": selectors.evaluation_list(user=user).filter(model=model),
            "hyperparameter_rows": config_rows(
                model.hyperparameters,
                engine_defaults(model.algorithm, model.hyperparameters.get("domain", "image")),
            ),
            # The job that trained it (jobs are their owner's to see).
            "source_job": model.jobs.visible_to(user).filter(kind="meta_train").first(),
            "generative": samples.is_generative(model),
        },
    )


@require_GET
def model_weights(request: HttpRequest, pk: int) -> FileResponse:
    return weights_response(selectors.metamodel_get(user=request.user, pk=pk))


@require_GET
def model_card(request: HttpRequest, pk: int) -> HttpResponse:
    return card_response(request, selectors.metamodel_get(user=request.user, pk=pk))


@require_http_methods(["GET", "POST"])
def model_try(request: HttpRequest, pk: int) -> HttpResponse:
    """Try a model in the browser: a labeled support set and queries in, predictions out; stores nothing.

    Bad input (400), a busy server (503) or a prediction past its deadline (504) shows its
    message in the page.
    """
    model = selectors.metamodel_get(user=request.user, pk=pk)
    context = predict_page.try_page_context(model=model, get=request.GET, post=request.POST)
    if request.method == "POST" and context["kind"]:
        try:
            context["result"] = heavy_work.run_heavy(
                predict_page.try_page_predict, model=model, post=request.POST, files=request.FILES
            )
        except InvalidInput as err:
            context["error"] = err.message
            return render(request, "learning/model_try.html", context, status=400)
        except heavy_work.HeavyWorkError as err:
            context["error"] = err.message
            return _refused(render(request, "learning/model_try.html", context), err)
    return render(request, "learning/model_try.html", context)


@require_http_methods(["GET", "POST"])
def model_samples(request: HttpRequest, pk: int) -> HttpResponse:
    """Draw new images of a class from a user's examples of it (generative models); stores nothing."""
    model = selectors.metamodel_get(user=request.user, pk=pk)
    context = {
        "model": model,
        "generative": samples.is_generative(model),
        "limits": {"support": samples.MAX_SUPPORT, "count": samples.MAX_COUNT},
        "values": {key: str(request.POST.get(key, "")) for key in ("count", "seed")},
        "default_count": samples.DEFAULT_COUNT,
        "result": None,
        "error": "",
    }
    if request.method == "POST" and context["generative"]:
        try:
            context["result"] = heavy_work.run_heavy(
                samples.draw_samples,
                model=model,
                support=request.FILES.getlist("support"),
                count=request.POST.get("count"),
                seed=request.POST.get("seed"),
            )
        except InvalidInput as err:
            context["error"] = err.message
            return render(request, "learning/model_samples.html", context, status=400)
        except heavy_work.HeavyWorkError as err:
            context["error"] = err.message
            return _refused(render(request, "learning/model_samples.html", context), err)
    return render(request, "learning/model_samples.html", context)


@require_GET
def task_spec_list(request: HttpRequest) -> HttpResponse:
    page = _page(request, selectors.task_spec_list(user=request.user))
    return render(request, "learning/taskspec_list.html", {"page": page})


@require_GET
def task_spec_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    spec = get_object_or_404(selectors.task_spec_list(user=user), pk=pk)
    return render(
        request,
        "learning/taskspec_detail.html",
        {
            "spec": spec,
            "split_parts": [
                (label, spec.split.get(part, []))
                for label, part in (
                    ("Meta-train", "meta_train"),
                    ("Meta-val", "meta_val"),
                    ("Meta-test", "meta_test"),
                )
            ],
            "models": _with_visible_domains(selectors.metamodel_list(user=user).filter(task_spec=spec), user),
            "evaluations": selectors.evaluation_list(user=user).filter(task_spec=spec),
        },
    )


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account, log in with it, and go home."""
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        login(request, form.save())
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


@require_GET
def transfer_matrix(request: HttpRequest) -> HttpResponse:
    shots = request.GET.get("shots", "")
    matrix = selectors.transfer_matrix(user=request.user, shots=int(shots) if shots.isdigit() else None)
    return render(request, "learning/transfer_matrix.html", {"matrix": matrix})


@require_GET
def transfer_recommend(request: HttpRequest) -> HttpResponse:
    targets = (
        selectors.domain_list(user=request.user)
        .exclude(modality=SourceDomain.Modality.FUNCTION_REGRESSION)
        .order_by("name")
    )
    slug = request.GET.get("domain", "")
    ranking = error = None
    if slug:
        try:
            ranking = recommend_sources(
                user=request.user, target=selectors.domain_get(user=request.user, slug=slug)
            )
        except InvalidInput as exc:
            error = exc.message
    return render(
        request,
        "learning/transfer_recommend.html",
        {"targets": targets, "selected": slug, "ranking": ranking, "error": error},
        status=400 if error else 200,
    )


@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    """Two or more models or jobs side by side: curves, config diff, evaluations with CIs."""
    try:
        result = comparison(
            user=request.user, model_ids=request.GET.getlist("model"), job_ids=request.GET.getlist("job")
        )
    except InvalidInput as err:
        return render(request, "learning/compare.html", {"error": err.message}, status=400)
    return render(request, "learning/compare.html", {"comparison": result, "curves": result.curves()})
