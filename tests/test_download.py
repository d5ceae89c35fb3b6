"""`DATA = "flickr8k"`: the original zips downloaded from a local file server, unpacked, checked, moved into place."""

from __future__ import annotations

import http.server
import sys
import threading
import types
import zipfile
from pathlib import Path

import pytest

from helpers.errors import DatasetError
from helpers.machinery import find_data
from helpers.machinery.dataset import load_dataset
from helpers.machinery.download import download_flickr8k
from helpers.machinery.fixture_layouts import write_fixture_layout


@pytest.fixture(scope="module")
def zips(tmp_path_factory) -> Path:
    """The two zips as the original release has them: images inside Flicker8k_Dataset/, the text files at the top."""
    original = write_fixture_layout("original", tmp_path_factory.mktemp("original"), every=20)
    served = tmp_path_factory.mktemp("served")
    with zipfile.ZipFile(served / "Flickr8k_Dataset.zip", "w") as images:
        for picture in sorted((original / "Flicker8k_Dataset").iterdir()):
            images.write(picture, f"Flicker8k_Dataset/{picture.name}")
        images.writestr("__MACOSX/Flicker8k_Dataset/._junk", b"resource fork")
    with zipfile.ZipFile(served / "Flickr8k_text.zip", "w") as text:
        for file in sorted((original / "Flickr8k_text").iterdir()):
            text.write(file, file.name)
    (served / "broken").mkdir()
    (served / "broken" / "Flickr8k_Dataset.zip").write_bytes(b"PK\x03\x04 not really a zip" * 100)
    (served / "broken" / "Flickr8k_text.zip").write_bytes((served / "Flickr8k_text.zip").read_bytes())
    return served


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the zips; under /cut/ it promises the whole file and sends half (a dropped connection)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.startswith("/cut/"):
            return super().do_GET()
        body = (Path(self.directory) / self.path.removeprefix("/cut/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])


@pytest.fixture(scope="module")
def server(zips):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Handler(*a, directory=str(zips)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_the_original_zips_become_a_flickr8k_folder(server, tmp_path, capsys):
    dest = download_flickr8k(tmp_path / "flickr8k", base_url=server, use_kagglehub=False)
    data = load_dataset(dest)
    assert dest == tmp_path / "flickr8k" and data.layout == "original"
    assert (dest / "Flickr8k_text" / "Flickr_8k.trainImages.txt").is_file()
    assert not (dest / "__MACOSX").exists() and len(list((dest / "Flicker8k_Dataset").iterdir())) == len(data.captions)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flickr8k"]  # no staging folder, no zips left
    assert "Flickr8k is in" in capsys.readouterr().out
    # a second call finds it: no server needed
    assert download_flickr8k(dest, base_url="http://127.0.0.1:9", use_kagglehub=False) == dest


def test_a_cut_download_leaves_nothing_half_done(server, tmp_path):
    with pytest.raises(DatasetError, match="Could not download Flickr8k") as error:
        download_flickr8k(tmp_path / "flickr8k", base_url=f"{server}/cut", use_kagglehub=False)
    assert "Get Flickr8k" in str(error.value)  # the README's instructions follow
    assert not (tmp_path / "flickr8k").exists()
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.zip"))


def test_a_damaged_zip_is_deleted_so_the_next_try_downloads_it_again(server, tmp_path):
    with pytest.raises(DatasetError, match="Flickr8k_Dataset.zip is damaged"):
        download_flickr8k(tmp_path / "flickr8k", base_url=f"{server}/broken", use_kagglehub=False)
    kept = sorted(p.name for p in (tmp_path / "flickr8k.downloads").iterdir())
    assert kept == ["Flickr8k_text.zip"] and not (tmp_path / "flickr8k").exists()
    dest = download_flickr8k(tmp_path / "flickr8k", base_url=server, use_kagglehub=False)
    assert load_dataset(dest).layout == "original"


def test_offline_the_message_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # not installed
    with pytest.raises(DatasetError) as error:
        download_flickr8k(tmp_path / "flickr8k", base_url="http://127.0.0.1:9")
    message = str(error.value)
    assert "kagglehub is not installed" in message and "127.0.0.1:9" in message
    assert "copy the folder here" in message and "Flickr8k_Dataset.zip" in message


def test_a_folder_in_the_way_is_not_overwritten(server, tmp_path):
    (tmp_path / "flickr8k").mkdir()
    (tmp_path / "flickr8k" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="is not a usable Flickr8k folder: move it away"):
        download_flickr8k(tmp_path / "flickr8k", base_url=server, use_kagglehub=False)
    assert (tmp_path / "flickr8k" / "notes.txt").read_text() == "mine"


def test_kagglehub_comes_first_when_installed(tmp_path, monkeypatch):
    kaggle_copy = write_fixture_layout("kaggle", tmp_path / "kagglehub" / "versions" / "1", every=20)
    calls = []
    module = types.SimpleNamespace(dataset_download=lambda handle: calls.append(handle) or str(kaggle_copy))
    monkeypatch.setitem(sys.modules, "kagglehub", module)
    assert download_flickr8k(tmp_path / "unused", base_url="http://127.0.0.1:9") == kaggle_copy
    assert calls == ["adityajn105/flickr8k"] and not (tmp_path / "unused").exists()


def test_data_flickr8k_downloads_when_no_copy_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(find_data, "flickr8k_candidates", lambda: [tmp_path / "nothing"])
    downloaded = write_fixture_layout("kaggle", tmp_path / "downloaded", every=20)
    monkeypatch.setattr("helpers.machinery.download.download_flickr8k", lambda: downloaded)
    assert find_data.resolve_data("flickr8k") == (downloaded, False)
    assert find_data.resolve_data("auto")[1] is True  # "auto" never downloads: the fixture
