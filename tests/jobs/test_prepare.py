"""Starting a job (magtrack_dask.jobs.prepare): what refuses, what resumes, what the fingerprint holds."""

import pytest

from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.jobs import JobError, job_status, prepare_job, run_job
from magtrack_dask.jobs import prepare as prepare_module
from magtrack_dask.validation import InputError

from tests.conftest import snapshot, store_bytes

distributed = pytest.importorskip("distributed")


def test_job_error_is_an_input_error():
    assert issubclass(JobError, InputError) and issubclass(JobError, ValueError)


def test_existing_results_refuse_without_resume_or_overwrite(client, archives, tmp_path):
    out = tmp_path / "r.zarr"
    run_job(archives["yxt"], out, client=client)
    before = store_bytes(out)
    with pytest.raises(JobError, match="--resume"):
        prepare_job(archives["yxt"], out)
    with pytest.raises(JobError, match=r"other inputs or parameters \(.*parameters.frames_per_task: 16 -> 32\)"
                                       r"; pass --overwrite"):
        prepare_job(archives["yxt"], out, frames_per_task=32, resume=True)
    with pytest.raises(JobError, match="source"):
        prepare_job(archives["tbyx"], out, resume=True)
    assert store_bytes(out) == before  # refused runs touch nothing
    report = run_job(archives["yxt"], out, client=client, frames_per_task=32, overwrite=True)
    assert report.n_chunks == 2 and report.complete


def test_fingerprint_records_the_stage_options(archives, tmp_path):
    out = tmp_path / "r.zarr"
    job = prepare_job(archives["yxt"], out, pipeline={"radial_profile": {"oversample": 2}})
    assert job.fingerprint["stage_options"] == {"radial_profile": {"oversample": 2}}
    assert job_status(out)["fingerprint"] == job.fingerprint
    # the same options as an object, or with defaults spelled out: the same job
    same = PipelineOptions(radial_profile={"oversample": 2}, refine_rounds=5)
    assert prepare_job(archives["yxt"], out, pipeline=same, resume=True).fingerprint == job.fingerprint
    with pytest.raises(JobError, match=r"stage_options\.radial_profile: \{'oversample': 2\} -> '<unset>'"):
        prepare_job(archives["yxt"], out, resume=True)
    plain = prepare_job(archives["yxt"], tmp_path / "plain.zarr", pipeline={"n auto_conv_multiline_sub_pixel": 5})
    assert plain.fingerprint["stage_options"] == {} and plain.fingerprint["parameters"]["pipeline"] == "stack_to_xyzp"


def test_refuses_to_overwrite_what_is_not_a_store(archives, tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(JobError, match="out: refusing to overwrite .*precious: it is a folder, not a Zarr store"):
        prepare_job(archives["yxt"], folder, overwrite=True)
    with pytest.raises(JobError, match="not a magtrack-dask results store"):
        prepare_job(archives["yxt"], folder, resume=True)
    assert (folder / "notes.txt").read_text() == "keep me"
    with pytest.raises(JobError, match="archive not found"):
        prepare_job(tmp_path / "missing.zarr", tmp_path / "r.zarr")
    with pytest.raises(JobError, match="exclude each other"):
        prepare_job(archives["yxt"], tmp_path / "r.zarr", resume=True, overwrite=True)


def test_bad_stage_options_are_bad_input_and_create_nothing(archives, tmp_path):
    before = snapshot(tmp_path)
    with pytest.raises(JobError, match=r"cannot track .*: unknown stage option 'radial'"):
        prepare_job(archives["yxt"], tmp_path / "r.zarr", pipeline={"radial": {}})
    with pytest.raises(JobError, match=r"pipeline must be a PipelineOptions or a dict of stage options, got list"):
        prepare_job(archives["yxt"], tmp_path / "r.zarr", pipeline=[1])
    assert snapshot(tmp_path) == before


def test_a_bug_inside_track_is_not_called_bad_input(archives, tmp_path, monkeypatch):
    """Only the package's input errors become JobError; a ValueError or TypeError of a bug keeps its type."""
    for exc in (ValueError, TypeError, KeyError):
        def buggy(*args, **kwargs):
            raise exc("a bug")

        monkeypatch.setattr(prepare_module, "plan_tracking", buggy)
        with pytest.raises(exc) as info:
            prepare_job(archives["yxt"], tmp_path / "r.zarr")
        assert not isinstance(info.value, JobError)
    assert not (tmp_path / "r.zarr").exists()


def test_resuming_with_another_method_is_refused(archives, tmp_path):
    out = tmp_path / "r.zarr"
    job = prepare_job(archives["yxt"], out)
    assert job.fingerprint["method"] == "accurate" and job.ds.attrs["method"] == "accurate"
    with pytest.raises(JobError, match=r"other inputs or parameters \(method: 'accurate' -> 'magtrack'"):
        prepare_job(archives["yxt"], out, method="magtrack", resume=True)
    assert prepare_job(archives["yxt"], out, resume=True).fingerprint == job.fingerprint
    # stage options belong to the magtrack method: with them the default is 'magtrack'
    assert prepare_job(archives["yxt"], tmp_path / "m.zarr", pipeline={}).fingerprint["method"] == "magtrack"


def test_fit_models_are_in_the_fingerprint_and_required(archives, fit_zlut_path, fit_models, tmp_path):
    out = tmp_path / "r.zarr"
    job = prepare_job(archives["tyx"], out, fit_zlut_path, method="fit")
    assert job.fingerprint["method"] == "fit" and job.ds.attrs["zlut_kind"] == "per-bead"
    # the same models in memory are the same job; other models are not
    assert prepare_job(archives["tyx"], out, list(fit_models), method="fit", resume=True).fingerprint == \
        job.fingerprint
    with pytest.raises(JobError, match=r"other inputs or parameters \(zlut_sha256: "):
        prepare_job(archives["tyx"], out, fit_models[::-1], method="fit", resume=True)
    shared = prepare_module._zlut_digest(fit_models[0])
    assert shared != prepare_module._zlut_digest(fit_models[:1]) != job.fingerprint["zlut_sha256"]
    # a fit without models is bad input, refused before any store exists
    with pytest.raises(JobError, match="cannot track .*: method 'fit' needs a Z-LUT: the image model"):
        prepare_job(archives["tyx"], tmp_path / "none.zarr", method="fit")
    assert not (tmp_path / "none.zarr").exists()
