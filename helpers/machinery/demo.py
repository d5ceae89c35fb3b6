"""`python -m helpers demo`: a web page over a trained model, to show it to others (Gradio, the `demo` extra).

Two tabs. *Caption a photo*: upload or paste one and get the greedy and the beam-search caption with their
log-probabilities (and, for an attention model, where it looked for each word). *Search photos*: type a few words
and get the photos of a folder (or of the test split) that the model says they describe best.

    demo = CaptionDemo(Workspace("work"))      # loads the trained model once; a clear error if there is none
    demo.caption("photo.jpg", beam_width=3)     # what the first tab shows, as a dict
    demo.search("a dog on the grass", "photos/")
    launch(demo, port=7860)                     # serves the page on http://127.0.0.1:7860 until Ctrl-C
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers.decoding import attention_maps, check_beam_width, decode
from helpers.errors import CourseError, SettingError
from helpers.images import find_image_files, read_rgb
from helpers.machinery import pipeline, search_stage, shipped_captioner
from helpers.machinery.workspace import DEFAULT_MODEL, Workspace

THUMBNAIL = 320  # pixels a side of the search results' pictures


class CaptionDemo:
    """A trained model of a work folder, loaded once, and what each tab of the page asks of it."""

    def __init__(self, work: Workspace, model_name: str = DEFAULT_MODEL):
        self.work, self.model_name = work, model_name
        self.shipped = pipeline.shipped_answers(work, model_name) is not None  # which model load_captioner reads
        self.trained = pipeline.load_captioner(work, model_name)
        self.model, self.vocab, self.config = self.trained
        self.attention = self.config["pooling"] == "none"

    def caption(self, image: str | Path, beam_width: int = 3) -> dict:
        """The greedy and beam captions of one photo with their log-probabilities, and the attention figure."""
        if not image:
            raise SettingError("No photo yet: upload one, or paste one from the clipboard.")
        check_beam_width(beam_width, self.vocab)
        names, found = pipeline.encode_photos(self.work, self.config, [image])
        key = next(iter(names))
        if key not in found:
            raise SettingError(f"{Path(image).name} could not be read ({found.failed.get(key, 'unknown reason')}): "
                               "try a JPEG or PNG photo.")
        result = {}
        for name, width in (("greedy", 1), ("beam", beam_width)):
            decoded = decode(self.model, found, self.vocab, width, keys=[key])
            words = len(decoded.captions[0].split()) + 1  # and <end>
            result[name] = {"caption": decoded.captions[0], "log_prob": float(decoded.log_probs[0]),
                            "per_word": float(decoded.log_probs[0]) / words}
        result["figure"] = self._attention_figure(image, decoded) if self.attention else None
        return result

    def about(self) -> str:
        """One line on the model that answers: its file, decoder, features and best epoch."""
        record = self.config
        if self.shipped:
            model = f"`{shipped_captioner.SHIPPED_DIR / shipped_captioner.WEIGHTS}` (the captioner that ships with " \
                    "the course: this work folder has no model yet)"
        else:
            model = f"`{self.work.model(self.model_name).keras}`"
        return (f"Model {model}: the {record.get('decoder', 'merge')} decoder on "
                f"{record['encoder']} features ({record['weights']} weights), its best epoch "
                f"{record.get('best_epoch')} of {record.get('epochs_run')}.")

    def _attention_figure(self, image: str | Path, decoded):
        from helpers.machinery.figures import plot_attention

        words, maps = attention_maps(decoded, 0, self.vocab)
        return plot_attention(image, words, maps)

    def search(self, query: str, folder: str = "", top: int = 6) -> dict:
        """The `top` photos of `folder` (the test split's when empty) best described by `query`; see search_stage."""
        paths = None
        if folder.strip():
            paths, problems = find_image_files([folder.strip()])
            if not paths:
                raise SettingError(f"No photo to search: {'; '.join(problems)}.")
        return search_stage.search(self.work, query, paths, top, trained=self.trained)


def caption_line(found: dict) -> str:
    """One result of `CaptionDemo.caption` as the page shows it."""
    return f"{found['caption']}   (log-probability {found['log_prob']:.2f}, {found['per_word']:.2f} a word)"


def search_notes(result: dict) -> str:
    """What the search tab says under its gallery: how many photos, unknown words, skipped files."""
    lines = [f"The best {len(result['results'])} of {result['images']} photos for \"{result['words']}\" "
             f"(scores: log-probability with {result['normalisation']} normalisation, higher is better)."]
    if result["unknown_words"]:
        unknown = ", ".join(result["unknown_words"])
        lines.append(f"Not in the model's vocabulary, so scored as an unknown word: {unknown}.")
    lines += [f"Skipped {Path(name).name}: {why}." for name, why in result["failed"].items()]
    return "\n\n".join(lines)


def build_app(demo: CaptionDemo):
    """The Gradio page: a tab to caption a photo, a tab to search photos by words."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    import gradio as gr

    def on_caption(image, beam_width):
        try:
            found = demo.caption(image, int(beam_width))
        except CourseError as error:
            raise gr.Error(str(error)) from None
        return caption_line(found["greedy"]), caption_line(found["beam"]), found["figure"]

    def on_search(query, folder, top):
        try:
            result = demo.search(query, folder, int(top))
        except CourseError as error:
            raise gr.Error(str(error)) from None
        pictures = []
        for r in result["results"]:
            picture = read_rgb(r["image"])
            picture.thumbnail((THUMBNAIL, THUMBNAIL))
            pictures.append((picture, f"#{r['rank']}  {r['score']:.2f}: {r['caption']}"))
        return pictures, search_notes(result)

    about = demo.about()
    with gr.Blocks(title="Image captioning demo", analytics_enabled=False) as app:
        gr.Markdown(f"# Image captioning: a CNN encoder and an LSTM decoder\n{about}")
        with gr.Tab("Caption a photo"):
            with gr.Row():
                image = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Your photo",
                                 elem_id="photo")
                with gr.Column():
                    beam = gr.Slider(2, 10, value=3, step=1, label="Beam width", elem_id="beam-width")
                    button = gr.Button("Caption it", variant="primary", elem_id="caption-button")
                    greedy = gr.Textbox(label="Greedy search (the likeliest word at each step)",
                                        elem_id="greedy-caption")
                    beamed = gr.Textbox(label="Beam search (the likeliest whole caption of those it kept)",
                                        elem_id="beam-caption")
            figure = gr.Plot(label="Where the model looked for each word", visible=demo.attention,
                             elem_id="attention-map")
            for event in (button.click, image.upload):
                event(on_caption, [image, beam], [greedy, beamed, figure])
        with gr.Tab("Search photos"):
            with gr.Row():
                query = gr.Textbox(label="Words to look for", placeholder="a dog running on the grass",
                                   elem_id="query")
                folder = gr.Textbox(label="Folder of photos (empty: the test split's images)", elem_id="folder")
                top = gr.Slider(1, 24, value=6, step=1, label="How many", elem_id="top")
            go = gr.Button("Search", variant="primary", elem_id="search-button")
            gallery = gr.Gallery(label="Best matches first", columns=3, elem_id="results")
            notes = gr.Markdown(elem_id="search-notes")
            for event in (go.click, query.submit):
                event(on_search, [query, folder, top], [gallery, notes])
    return app


def launch(demo: CaptionDemo, port: int = 7860, share: bool = False) -> None:
    """Serve the page on this machine (and through a public gradio.live link with `share`) until Ctrl-C."""
    app = build_app(demo)
    app.queue().launch(server_name="127.0.0.1", server_port=port, share=share, prevent_thread_lock=True,
                       quiet=True, show_error=True)
    print(f"The demo is running at http://127.0.0.1:{port} (Ctrl-C stops it).", flush=True)
    if share and app.share_url:
        print(f"Shared at {app.share_url} for as long as this runs.", flush=True)
    app.block_thread()
