from pathlib import Path

import pytest

from wanka.sim.traces import (
    TraceError,
    busiest_tenant,
    read_acme,
    read_helios,
    read_itp,
    read_openb,
    read_pai,
    read_philly,
    read_wanka,
    select_tenants,
    write_wanka,
)

SAMPLE = Path(__file__).parent / "data" / "philly_busy_halfday.csv"


def test_philly_sample_reads_in_submit_order_from_zero():
    trace = read_philly(SAMPLE)
    assert len(trace.jobs) == 660 and trace.skipped == 0
    submits = [j.submit_s for j in trace.jobs]
    assert submits[0] == 0.0 and submits == sorted(submits) and submits[-1] < 43200
    assert {j.cards for j in trace.jobs} >= {1, 8} and all(j.tenant == j.queue for j in trace.jobs)


def test_select_tenants_keeps_their_jobs_rebased_and_busiest_asks_for_the_most_card_seconds():
    trace = read_philly(SAMPLE)
    work: dict[str, float] = {}
    for j in trace.jobs:
        work[j.tenant] = work.get(j.tenant, 0.0) + j.cards * j.duration_s
    top = max(work, key=work.get)
    assert busiest_tenant(trace) == top
    one = select_tenants(trace, ["busiest"])
    assert [j.id for j in one.jobs] == [j.id for j in trace.jobs if j.tenant == top]
    assert one.jobs[0].submit_s == 0.0 and one.source == trace.source
    first = next(j.submit_s for j in trace.jobs if j.tenant == top)
    assert [j.submit_s for j in one.jobs] == [j.submit_s - first for j in trace.jobs if j.tenant == top]
    assert len(select_tenants(trace, ["6214e9", "11cb48"]).jobs) == 503 + 105
    with pytest.raises(ValueError, match="no such tenant in the trace: nope"):
        select_tenants(trace, ["nope", "6214e9"])


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "t.csv"
    p.write_text(text)
    return p


def test_a_bad_row_names_file_line_and_column(tmp_path):
    p = write(
        tmp_path,
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-09 07:01:55,66.0,1,66.0,a\n"
        "2017-10-09 07:02:55,66.0,two,66.0,a\n",
    )
    with pytest.raises(TraceError) as err:
        read_philly(p)
    assert (err.value.line, err.value.column) == (3, "num_gpus") and str(p) in str(err.value)


@pytest.mark.parametrize(
    "row, column",
    [
        ("2017-13-09 07:01:55,66,1,66,a", "timestamp"),
        ("2017-10-09 07:01:55,-5,1,66,a", "duration"),
        ("2017-10-09 07:01:55,66,0,66,a", "num_gpus"),
        ("2017-10-09 07:01:55,66,1.5,66,a", "num_gpus"),
        ("2017-10-09 07:01:55,66,1,66,", "cluster"),
    ],
    ids=["month-13", "negative-duration", "zero-gpus", "half-gpu", "no-cluster"],
)
def test_skip_bad_rows_skips_and_counts(tmp_path, row, column):
    good = "2017-10-09 07:00:00,10,1,10,a\n"
    p = write(tmp_path, "timestamp,duration,num_gpus,gpu_time,cluster\n" + good + row + "\n" + good)
    with pytest.raises(TraceError, match=f"column '{column}'"):
        read_philly(p)
    trace = read_philly(p, skip_bad_rows=True)
    assert len(trace.jobs) == 2 and trace.skipped == 1 and "line 3" in trace.problems[0]


def test_missing_column_is_reported(tmp_path):
    with pytest.raises(TraceError, match="missing column"):
        read_philly(write(tmp_path, "timestamp,duration,cluster\n"))


def test_wanka_csv(tmp_path):
    p = write(
        tmp_path, "job_id,submit_s,duration_s,cards,tenant,queue\nj1,100,60,16,acme,\nj2,50,30,1,lab,lab-q\n"
    )
    jobs = read_wanka(p).jobs
    assert [(j.id, j.submit_s, j.queue) for j in jobs] == [("j2", 0.0, "lab-q"), ("j1", 50.0, "acme")]


def test_wanka_parquet_round_trips_and_checks_rows_like_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    philly = read_philly(DATA / "philly_busy_halfday.csv")
    out = tmp_path / "jobs.parquet"
    write_wanka(philly, out)
    back = read_wanka(out)
    assert back.jobs == philly.jobs and len(back.jobs) > 100
    csv_out = tmp_path / "jobs.csv"
    write_wanka(back, csv_out)
    assert read_wanka(csv_out).jobs == philly.jobs

    bad = pa.table(
        {
            "job_id": ["a", "b", "c"],
            "submit_s": [0.0, 10.0, 20.0],
            "duration_s": [60.0, None, 60.0],  # a null duration in the second row
            "cards": [8, 8, 8],
            "tenant": ["t", "t", "t"],
        }
    )
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(TraceError, match=r"bad\.parquet, row 2, column 'duration_s'"):
        read_wanka(tmp_path / "bad.parquet")
    skipped = read_wanka(tmp_path / "bad.parquet", skip_bad_rows=True)
    assert [j.id for j in skipped.jobs] == ["a", "c"] and skipped.skipped == 1
    pq.write_table(bad.drop(["tenant"]), tmp_path / "nameless.parquet")
    with pytest.raises(TraceError, match=r"missing column.*tenant"):
        read_wanka(tmp_path / "nameless.parquet")
    (tmp_path / "not.parquet").write_text("job_id,submit_s\n")
    with pytest.raises(TraceError, match="not a readable Parquet file"):
        read_wanka(tmp_path / "not.parquet")


DATA = Path(__file__).parent / "data"


def test_itp_filters_zero_gpu_jobs():
    trace = read_itp(DATA / "itp_sample.csv")
    assert [(j.id, j.submit_s, j.cards) for j in trace.jobs] == [
        ("itp-1", 0.0, 8),
        ("itp-2", 120.0, 1),
        ("itp-3", 300.0, 16),
    ]
    assert trace.filtered == 1 and trace.jobs[0].tenant == "itp"


def test_helios_uses_the_virtual_cluster_as_tenant():
    trace = read_helios(DATA / "helios_cluster_log_sample.csv")
    assert [(j.submit_s, j.cards, j.tenant, j.duration_s) for j in trace.jobs] == [
        (0.0, 8, "vcA", 3600.0),
        (600.0, 16, "vcA", 1080.0),
    ]
    assert trace.filtered == 1


def test_acme_reads_offset_times():
    trace = read_acme(DATA / "acme_trace_kalos_sample.csv")
    assert [(j.submit_s, j.cards, j.tenant) for j in trace.jobs] == [(0.0, 32, "u1"), (336.0, 8, "u2")]
    assert trace.filtered == 1


def test_openb_counts_a_shared_gpu_as_one_card_and_skips_unscheduled_pods():
    trace = read_openb(DATA / "openb_pod_list_sample.csv")
    by = {j.id: j for j in trace.jobs}
    assert set(by) == {"openb-pod-0000", "openb-pod-0001", "openb-pod-0002"}
    assert by["openb-pod-0001"].cards == 1 and by["openb-pod-0002"].cards == 8
    assert by["openb-pod-0002"].duration_s == 3590.0 and by["openb-pod-0002"].tenant == "BE"
    assert trace.filtered == 2


def test_pai_joins_jobs_and_tasks():
    trace = read_pai(DATA / "pai_sample")
    by = {j.id: j for j in trace.jobs}
    assert set(by) == {"pai-job-a", "pai-job-b"}  # job-c has no GPU task
    assert by["pai-job-a"].cards == 4 and by["pai-job-a"].duration_s == 3980.0
    assert by["pai-job-b"].cards == 1 and by["pai-job-b"].submit_s == 200.0
    assert trace.filtered == 1


def test_every_reader_reports_bad_rows_by_line_and_column(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("job_id,user,vc,gpu_num,submit_time,duration\n1,u,vc,8,yesterday,60\n")
    with pytest.raises(TraceError) as err:
        read_helios(p)
    assert (err.value.line, err.value.column) == (2, "submit_time")


def test_an_error_names_file_line_and_column_once(tmp_path):
    p = write(tmp_path, "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,66,abc,66,a\n")
    with pytest.raises(TraceError) as err:
        read_philly(p)
    assert str(err.value) == f"{p}, line 2, column 'num_gpus': 'abc' is not a number"
    assert err.value.in_row  # a bad row: --skip-bad-rows would skip it
    trace = read_philly(p, skip_bad_rows=True)
    assert trace.problems == ["line 2, column 'num_gpus': 'abc' is not a number"]


def copy_with_first_row_twice(sample: Path, to: Path, header: bool = True) -> Path:
    lines = sample.read_text().splitlines(keepends=True)
    first = 1 if header else 0
    to.write_text("".join([*lines[: first + 1], lines[first], *lines[first + 1 :]]))
    return to


@pytest.mark.parametrize(
    "reader, sample, column",
    [
        (read_itp, "itp_sample.csv", "job_id"),
        (read_helios, "helios_cluster_log_sample.csv", "job_id"),
        (read_acme, "acme_trace_kalos_sample.csv", "job_id"),
        (read_openb, "openb_pod_list_sample.csv", "name"),
        (read_wanka, None, "job_id"),
    ],
    ids=["itp", "helios", "acme", "openb", "wanka"],
)
def test_a_duplicate_job_id_is_a_bad_row_named_by_line_and_column(tmp_path, reader, sample, column):
    if sample is None:
        src = write(tmp_path, "job_id,submit_s,duration_s,cards,tenant\nj1,0,60,1,t\nj2,5,60,1,t\n")
    else:
        src = DATA / sample
    p = copy_with_first_row_twice(src, tmp_path / "dup.csv")
    with pytest.raises(TraceError) as err:
        reader(p)
    assert (err.value.line, err.value.column) == (3, column) and err.value.in_row
    assert str(err.value).startswith(f"{p}, line 3, column '{column}': duplicate job id ")
    assert str(err.value).endswith("(first on line 2)")
    assert reader(p, skip_bad_rows=True).skipped == 1


def test_a_duplicate_pai_job_names_its_table_line(tmp_path):
    folder = tmp_path / "pai"
    folder.mkdir()
    (folder / "pai_task_table.csv").write_text((DATA / "pai_sample" / "pai_task_table.csv").read_text())
    copy_with_first_row_twice(
        DATA / "pai_sample" / "pai_job_table.csv", folder / "pai_job_table.csv", header=False
    )
    with pytest.raises(TraceError, match=r"pai_job_table\.csv, line 2, column 'job_name': duplicate job id"):
        read_pai(folder)


def test_a_file_that_is_not_text_is_one_error_naming_the_first_line_that_is_not(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"job_id,submit_s,duration_s,cards,tenant\nj1,0,60,1,t\n\xff\xfe,1,1,1,t\n")
    with pytest.raises(TraceError) as err:
        read_wanka(p)
    assert str(err.value) == f"{p}, line 3: not UTF-8 text (byte ff cannot be decoded)"
    assert not err.value.in_row  # the file is unreadable: --skip-bad-rows does not skip it


def test_a_parquet_file_without_a_column_names_the_column_not_a_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"job_id": ["a"], "submit_s": [0.0]}), tmp_path / "t.parquet")
    with pytest.raises(TraceError) as err:
        read_wanka(tmp_path / "t.parquet")
    assert str(err.value).startswith(f"{tmp_path / 't.parquet'}, column 'duration_s': missing column")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("inf", "is not a finite number"),
        ("nan", "is not a finite number"),
        ("1e400", "is not a finite number"),  # parses as inf
        ("1_000", "is not a number"),
        ("99999999999999999999", "must be between 1 and 1e+06"),
        ("1e30", "must be between 1 and 1e+06"),
    ],
)
def test_a_card_count_is_a_finite_whole_number_within_bounds(tmp_path, value, why):
    """A number a reader takes is finite and bounded, else one line names it: no overflow in the
    core, no twin replaying for ever."""
    p = tmp_path / "w.csv"
    p.write_text(f"job_id,submit_s,duration_s,cards,tenant\nj1,0,100,{value},a\n")
    with pytest.raises(TraceError) as err:
        read_wanka(p)
    assert str(err.value) == f"{p}, line 2, column 'cards': {value!r} {why}"


@pytest.mark.parametrize("column", ["submit_s", "duration_s"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e12"])
def test_times_are_finite_and_bounded(tmp_path, column, value):
    row = {"job_id": "j1", "submit_s": "0", "duration_s": "100", "cards": "1", "tenant": "a"} | {
        column: value
    }
    p = tmp_path / "w.csv"
    p.write_text(",".join(row) + "\n" + ",".join(row.values()) + "\n")
    with pytest.raises(TraceError) as err:
        read_wanka(p)
    assert (err.value.line, err.value.column) == (2, column)


def test_non_finite_numbers_are_refused_by_every_reader(tmp_path):
    philly = write(tmp_path, "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-03 10:00:00,nan,1,1,vc\n")
    itp = tmp_path / "itp.csv"
    itp.write_text("job_id,submission_time,duration,num_gpu\na,0,100,inf\n")
    pai = tmp_path / "pai"
    pai.mkdir()
    (pai / "pai_job_table.csv").write_text("j1,i1,u,Terminated,0,100\n")
    (pai / "pai_task_table.csv").write_text("j1,t1,1,Terminated,0,100,600,29,nan,V100\n")
    for read, path, column in (
        (read_philly, philly, "duration"),
        (read_itp, itp, "num_gpu"),
        (read_pai, pai, "plan_gpu"),
    ):
        with pytest.raises(TraceError) as err:
            read(path)
        assert err.value.column == column and "finite" in str(err.value)


def test_a_mistyped_year_is_refused_not_replayed_for_millennia(tmp_path):
    p = write(
        tmp_path,
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-03 10:00:00,100,1,100,vc\n9999-10-03 10:00:00,100,1,100,vc\n",
    )
    with pytest.raises(TraceError, match=r"submit times span .* days; at most 3,660"):
        read_philly(p)


@pytest.mark.parametrize(
    ("rows", "line", "says"),
    [
        ("j1,0,100,8,a,,afterok:j2\nj2,0,100,8,a,,afterok:j1\n", 2, "waits on itself: j1 -> j2 -> j1"),
        ("j0,0,100,8,a,,\nj1,0,100,8,a,,afterok:j1\n", 3, "waits on itself: j1 -> j1"),
        ("j0,0,100,8,a,,\nj1,0,100,8,a,,afterok:nope\n", 3, "no row has job id 'nope'"),
    ],
)
def test_a_dependency_that_can_never_hold_is_refused_at_its_line(tmp_path, rows, line, says):
    p = tmp_path / "w.csv"
    p.write_text("job_id,submit_s,duration_s,cards,tenant,queue,dependency\n" + rows)
    with pytest.raises(TraceError) as err:
        read_wanka(p)
    assert (err.value.line, err.value.column) == (line, "dependency") and says in str(err.value)


HEADER = b"job_id,submit_s,duration_s,cards,tenant\n"


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        (b'"j1,0,100,1,a\n', "line 2", "not a readable CSV file (unexpected end of data)"),
        (b"j1,0,100,1,a,extra,more\n", "line 2", "7 fields; the header names 5"),
        (b"j1,0,100,1,a\x00\n", "line 2, column 'tenant'", "holds a control character"),
        (b"j1,0,100,1," + b"a" * 200_000 + b"\n", "line 2", "field larger than field limit"),
    ],
)
def test_a_broken_row_is_named_by_its_own_line(tmp_path, body, where, says):
    p = tmp_path / "w.csv"
    p.write_bytes(HEADER + body)
    with pytest.raises(TraceError) as err:
        read_wanka(p)
    assert str(err.value).startswith(f"{p}, {where}: ") and says in str(err.value)


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    p = tmp_path / "w.csv"
    p.write_bytes(b"\xef\xbb\xbf" + HEADER + b"j1,0,100,1,a\n")  # as spreadsheets save UTF-8
    assert [j.id for j in read_wanka(p).jobs] == ["j1"]


def test_a_pai_folder_without_its_task_table_names_that_file(tmp_path):
    (tmp_path / "pai_job_table.csv").write_text("j1,i1,u,Terminated,0,100\n")
    with pytest.raises(TraceError) as err:
        read_pai(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'pai_task_table.csv'}: no such file")
