"""Cookies and proxies reach every worker: read through Beam ``FileSystems`` in the DoFn's setup, from a path
only a Beam filesystem can read (a scheme registered here, standing in for gs://); never in the job graph."""

from __future__ import annotations

import pickle

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from pipeline import run
from pipeline.download import Download, DownloadConfig, Downloader
from pipeline.site.credentials import CredentialsError, check_cookies, read_proxies
from pipeline.site.site_access import ProxyPool, SiteAccess, SiteAccessConfig
from pipeline.stage import MAIN, OUTCOMES
from schemas import CandidateVideo, DownloadedVideo
from tests.fault_server import FaultServer
from tests.object_store import FakeObjectStore
from tests.pipeline.test_download import encode_mp4

SECRET = "s3cr3t-session-value"
COOKIES = ("# Netscape HTTP Cookie File\n"
           f"127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\t{SECRET}\n"
           ".youtube.com\tTRUE\t/\tTRUE\t4102444800\tLOGIN_INFO\tabc\n")


class _SecretsFileSystem(FakeObjectStore):
    """The fake object store (tests/object_store.py) under ``fleetsecrets://``: Beam finds it by scheme, the
    launcher's and worker's disks do not have these files. (Defined at module level: in-process runs see it.)"""

    objects: dict[str, bytes] = {}
    log: list[tuple[str, str]] = []
    faults: list[list] = []

    @classmethod
    def scheme(cls):
        return "fleetsecrets"


@pytest.fixture
def secrets():
    _SecretsFileSystem.objects = {"fleetsecrets://vault/cookies.txt": COOKIES.encode(),
                                "fleetsecrets://vault/garbage.txt": b"this is not a cookies file\n\x00\x01"}
    yield _SecretsFileSystem.objects
    _SecretsFileSystem.objects = {}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> bytes:
    return encode_mp4(tmp_path_factory.mktemp("media") / "v.mp4", seconds=1)


def test_cookies_staged_on_the_worker_reach_the_site_and_stay_out_of_the_job_graph(secrets, video, tmp_path):
    with FaultServer() as server:
        urls = [server.add(f"/v{i}.mp4", video) for i in range(2)]
        config = DownloadConfig(download_dir=str(tmp_path / "videos"),
                                site=SiteAccessConfig(cookies="fleetsecrets://vault/cookies.txt", socket_timeout_s=2.0))
        p = beam.Pipeline(runner=FnApiRunner())
        found = p | beam.Create([CandidateVideo(video_id=f"v{i}", source="test", url=u, title="Mario speedrun")
                                 for i, u in enumerate(urls)])
        got = found | Download(config)
        assert_that(got[MAIN] | "Ids" >> beam.Map(lambda d: d.video_id), equal_to(["v0", "v1"]), label="Stored")
        assert_that(got[OUTCOMES], equal_to([]), label="NoFailures")
        assert SECRET.encode() not in p.to_runner_api().SerializeToString()  # the graph holds the path only
        assert SECRET.encode() not in pickle.dumps(config)
        p.run().wait_until_finish()
        cookies = [r.headers.get("Cookie", "") for r in server.log()]
    assert len(cookies) >= 2 and all(f"SID={SECRET}" in c for c in cookies), cookies


def test_unreadable_or_unparsable_cookies_stop_the_launch_with_a_clear_message(secrets, tmp_path, capsys):
    for path, says in (("fleetsecrets://vault/missing.txt", "cannot read cookies file fleetsecrets://vault/missing.txt"),
                       ("fleetsecrets://vault/garbage.txt", "is not a Netscape cookies.txt")):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            run.parse(["--catalog", "x.jsonl", "--output", str(tmp_path), "--cookies", path])
        assert says in capsys.readouterr().err, path
        with pytest.raises(CredentialsError, match=says.split(" fleet")[0]):
            SiteAccess(SiteAccessConfig(cookies=path))  # the worker's setup refuses it the same way
    facts = check_cookies("fleetsecrets://vault/cookies.txt")
    assert (facts.count, facts.site_count, facts.site_expired) == (2, 1, 0)


def test_proxies_file_is_read_through_filesystems_and_checked(secrets):
    secrets["fleetsecrets://vault/proxies.txt"] = b"# pool\nhttp://10.0.0.1:3128\n\nsocks5://10.0.0.2:1080\n"
    secrets["fleetsecrets://vault/bad-proxies.txt"] = b"http://10.0.0.1:3128\n10.0.0.3:80\n"
    assert read_proxies("fleetsecrets://vault/proxies.txt") == ["http://10.0.0.1:3128", "socks5://10.0.0.2:1080"]
    with pytest.raises(CredentialsError, match="line 2 is not a proxy URL"):
        read_proxies("fleetsecrets://vault/bad-proxies.txt")
    config = SiteAccessConfig(proxy="http://10.0.0.9:8080", proxies_file="fleetsecrets://vault/proxies.txt")
    assert config.proxies() == ["http://10.0.0.9:8080", "http://10.0.0.1:3128", "socks5://10.0.0.2:1080"]


def test_proxy_rotation_is_deterministic_per_process_and_benches_a_failing_proxy():
    proxies = ["http://a:1", "http://b:1", "http://c:1"]
    clock = [0.0]
    pool = ProxyPool(proxies, seed="host-7:1234", bench_after=2, bench_s=60.0, clock=lambda: clock[0])
    again = ProxyPool(proxies, seed="host-7:1234")
    first = [pool.pick() for _ in range(4)]
    assert first == [again.pick() for _ in range(4)]  # same worker, same order
    assert first[3] == first[0] and len(set(first[:3])) == 3  # a full rotation
    starts = {ProxyPool(proxies, seed=f"host-{i}:1").pick() for i in range(12)}
    assert len(starts) > 1  # different workers start on different proxies
    bad = first[1]
    pool.record(bad, ok=False)
    pool.record(bad, ok=False)
    assert pool.benched() == [bad]
    assert bad not in [pool.pick() for _ in range(6)]
    clock[0] += 61.0
    assert pool.benched() == [] and bad in [pool.pick() for _ in range(3)]


def test_a_dead_proxy_is_benched_and_downloads_go_through_the_live_one(video, tmp_path):
    """Two proxies: a closed port and a loopback server acting as an HTTP proxy. Every video is stored, all
    through the live proxy (the origin sees nothing), and the dead one is benched after 3 failures."""
    with FaultServer() as dead:
        dead_url = dead.url("")  # nothing listens there any more
    with FaultServer() as origin, FaultServer() as proxy:
        for i in range(6):
            origin.add(f"/v{i}.mp4", video)
            proxy.add(f"/v{i}.mp4", video)
        site_config = SiteAccessConfig(socket_timeout_s=2.0, backoff_base_s=0.01, max_backoff_s=0.1)
        config = DownloadConfig(download_dir=str(tmp_path / "videos"), retries=3, site=site_config)
        site = SiteAccess(site_config)
        site.proxies = ProxyPool([dead_url, proxy.url("")], seed="w", bench_after=3, bench_s=300.0)
        with Downloader(config, site) as downloader:
            results = [downloader.download(CandidateVideo(video_id=f"v{i}", source="test",
                                                          url=origin.url(f"/v{i}.mp4"), title="Mario speedrun"))
                       for i in range(6)]
        assert all(isinstance(r, DownloadedVideo) for r in results), results
        assert origin.log() == [] and {r.path for r in proxy.log()} == {f"/v{i}.mp4" for i in range(6)}
        assert site.proxies.benched() == [dead_url]
