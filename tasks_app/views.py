"""Job pages: the launch form, the live job list and the live job detail."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from learning import selectors as catalog
from learning.algorithms import transferable_models
from learning.config_table import config_rows, engine_defaults
from learning.errors import InvalidInput
from learning.models import SourceDomain
from learning.services.task_specs import default_split, split_summary
from tasks_app import selectors, services
from tasks_app.checkpoints import checkpoint_download
from tasks_app.estimates import seconds_per_task_step
from tasks_app.forms import JobFilterForm, MetaTrainForm, SettingsMixin, TransferForm
from tasks_app.rerun import Rerun, job_rerun


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    jobs = selectors.job_list(user=request.user)
    form = JobFilterForm(request.GET, jobs=jobs)
    rows = form.filter(jobs).prefetch_related("result_evaluations")
    page = Paginator(rows, 25).get_page(request.GET.get("page"))
    return render(request, "tasks_app/job_list.html", {"form": form, "page": page, "jobs": page.object_list})


def _prefill(request: HttpRequest, form: SettingsMixin, kind: str) -> Rerun | None:
    """Fill an unbound form from the job named by ``?rerun=<id>`` (one of ``kind`` the user may see)."""
    pk = request.GET.get("rerun", "")
    if request.method != "GET" or not pk.isdigit():
        return None
    rerun = job_rerun(selectors.job_get(user=request.user, pk=int(pk)), set(form.setting_names))
    if rerun is None or rerun.kind != kind:
        return None
    form.initial.update(rerun.initial)
    return rerun


@login_required
def job_launch(request: HttpRequest) -> HttpResponse:
    choices = {
        "domains": catalog.domain_list(user=request.user).order_by("name"),
        "task_specs": catalog.task_spec_list(user=request.user).order_by("domain__name", "name"),
    }
    initial = {"domain": request.GET.get("domain", "")}
    form = MetaTrainForm(request.POST or None, initial=initial, **choices)
    rerun = _prefill(request, form, "meta_train")
    splits = {
        d.slug: split_summary(domain=d, split=default_split(domain=d, seed=0)) for d in choices["domains"]
    }
    if request.method == "POST" and form.is_valid():
        try:
            job = services.job_create_meta_train(owner=request.user, **form.service_arguments())
        except InvalidInput as err:
            form.add_error(err.field if err.field in form.fields else None, err.message)
        else:
            messages.success(request, f"Job {job.pk} launched: it starts when a worker is free.")
            return redirect("job-detail", pk=job.pk)
    return render(
        request,
        "tasks_app/job_form.html",
        {
            "form": form,
            "rerun": rerun,
            "splits": splits,
            "split_shown": splits.get(form["domain"].value() or ""),
            "speeds": seconds_per_task_step(),
        },
        status=400 if form.errors else 200,
    )


@login_required
def job_transfer(request: HttpRequest) -> HttpResponse:
    user = request.user
    choices = {
        "models": transferable_models(catalog.metamodel_list(user=user)).order_by("name"),
        "domains": catalog.domain_list(user=user).exclude(modality=SourceDomain.Modality.FUNCTION_REGRESSION),
        "task_specs": catalog.task_spec_list(user=user).exclude(
            domain__modality=SourceDomain.Modality.FUNCTION_REGRESSION
        ),
    }
    initial = {"source_model": request.GET.get("source_model", ""), "domain": request.GET.get("domain", "")}
    form = TransferForm(request.POST or None, initial=initial, **choices)
    rerun = _prefill(request, form, "transfer")
    if request.method == "POST" and form.is_valid():
        try:
            job = services.job_create_transfer(owner=user, **form.service_arguments())
        except InvalidInput as err:
            form.add_error(err.field if err.field in form.fields else None, err.message)
        else:
            messages.success(request, f"Job {job.pk} launched: it starts when a worker is free.")
            return redirect("job-detail", pk=job.pk)
    return render(
        request,
        "tasks_app/transfer_form.html",
        {"form": form, "rerun": rerun},
        status=400 if form.errors else 200,
    )


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = selectors.job_get(user=request.user, pk=pk)
    context = {"job": job, "snapshot": selectors.job_snapshot(job), "rerun": job_rerun(job)}
    if "engine" in job.config:  # training jobs; an import or an evaluation shows its config as is
        engine = job.config["engine"]
        defaults = engine_defaults(job.config["algorithm"], engine.get("domain", "image"))
        context["config_rows"] = config_rows(engine, defaults)
    return render(request, "tasks_app/job_detail.html", context)


@login_required
@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = selectors.job_get(user=request.user, pk=pk)
    try:
        services.job_cancel(job=job)
        messages.info(
            request, f"Cancel requested for job {job.pk}: a running job stops after its current step."
        )
    except InvalidInput as err:
        messages.error(request, err.message)
    return redirect("job-detail", pk=job.pk)


@login_required
def job_checkpoint(request: HttpRequest, pk: int) -> HttpResponse:
    """The job's newest checkpoint (``?run=scratch`` for a transfer's baseline), to resume elsewhere."""
    return checkpoint_download(selectors.job_get(user=request.user, pk=pk), request.GET.get("run"))
