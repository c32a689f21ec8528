"""faceaging's web app: upload a selfie and see yourself at every age.

Thin by design: the pipeline lives in faceaging.FaceAger; this file only builds the UI.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from faceaging.ages import AUTO, GROUP_LABELS, AgeGroup  # noqa: E402
from faceaging.images import FaceAgingError, photos_in  # noqa: E402
from faceaging.memory import limit_malloc_arenas, release_freed_memory, release_gpu_libraries  # noqa: E402

if TYPE_CHECKING:
    from faceaging import AgingResult, FaceAger
    from faceaging.live import LiveAger

log = logging.getLogger("faceaging.app")
EXAMPLES = [str(p) for p in photos_in(Path(__file__).parent / "examples")]
PHOTO, FACE = "Whole photo", "Face only"

MAX_UPLOAD = "20mb"
# Photos are aged one at a time: on a 2-core CPU a second photo in parallel only splits the cores,
# and each in-flight photo costs memory. Slider moves and GIFs run alongside.
PIPELINE = {"concurrency_id": "pipeline", "concurrency_limit": 1}
# Gradio copies every output file into its cache (emptied by delete_cache below), so our own GIF
# and video files are only needed until then: the latest few are kept, the rest deleted, and disk use stays flat.
GIF_FOLDER = tempfile.TemporaryDirectory(prefix="faceaging_gifs_")
KEEP_GIFS = 32
CACHE_HOURS = 1
# Live: the browser sends a webcam frame this often (seconds); a frame that arrives while the last
# one is still being aged replaces it (Gradio keeps only the newest), so a slow server drops frames
# instead of falling behind. One stream runs at most LIVE_SECONDS, then the user starts it again.
LIVE_EVERY = 0.08
LIVE_SECONDS = 300
LIVE = {"concurrency_id": "live", "concurrency_limit": 2}
# The webcam's preview is a mirror; the aged view beside it is shown as one too.
CSS = "#live-out img { transform: scaleX(-1); }"
WEBCAM = gr.WebcamOptions(mirror=True, constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}})

limit_malloc_arenas()  # before torch and Gradio start their worker threads


def _load_models() -> FaceAger:
    from faceaging import FaceAger

    models = FaceAger.from_pretrained()  # FACEAGING_WEIGHTS (folder or Hub repo) or the bundled weights/
    if models.device.type == "cpu":
        release_gpu_libraries()  # torch's CUDA libraries, resident but never run here: 140-300 MB
    return models


# Importing torch and MTCNN takes ~2.5 s, so they load beside the server: the page shows meanwhile,
# and a photo sent before the models are ready waits for them.
_models = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faceaging-load").submit(_load_models)
_models.add_done_callback(lambda f: f.exception() and log.error("loading the models failed", exc_info=f.exception()))


def ager() -> FaceAger:
    try:
        return _models.result()
    except Exception as err:
        raise gr.Error(f"The aging model could not be loaded ({err}). The server's log has the details.") from None


def _user_errors(fn=None, *, trim: bool = True):
    """Turn every failure into a gr.Error sentence: users never see a traceback. After each request,
    memory that the request freed goes back to the OS, so the server stays near its working set
    (not after each live frame: a frame frees little, and trimming costs milliseconds)."""
    if fn is None:
        return functools.partial(_user_errors, trim=trim)

    @functools.wraps(fn)  # keeps the signature, so Gradio sees gr.Progress and the parameter names
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except FaceAgingError as err:
            raise gr.Error(str(err)) from None
        except Exception:
            log.exception("unexpected failure")
            raise gr.Error("Something went wrong with this photo. Please try another one.") from None
        finally:
            if trim:
                release_freed_memory()

    return wrapped


def _pictures(result: AgingResult, view: str, face: int) -> list[np.ndarray]:
    if view == FACE and result.faces:
        # cut from the whole photos, so the face view shows the photo's own resolution too
        return [result.aligned(face, result.photos[g]) for g in AgeGroup]
    return [result.photos[g] for g in AgeGroup]


def _photo_path(payload) -> str | None:
    """The uploaded file's path. Events skip Gradio's own image decoding (preprocess=False) so
    that faceaging's loader, which explains every unreadable file, sees the upload first."""
    if payload is None or isinstance(payload, str):
        return payload
    return payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)


def _face_index(choice: str | None) -> int:
    return int(choice.split()[-1]) - 1 if choice else 0


@_user_errors
def age_photo(image, view: str = PHOTO, own: str = AUTO, progress=gr.Progress()):  # noqa: B008
    """The six ages first; the GIF follows in its own step so the gallery shows without waiting for it.
    `own`: the age group the person says they are in, or "auto"."""
    image = _photo_path(image)
    if not image:
        raise gr.Error("Please upload a photo, take one with the webcam, or paste one.")
    if not _models.done():
        progress(0, desc="Loading the model (first photo after a restart)")
    told = AgeGroup.parse(own)
    result = ager().age(image, progress=progress, source_group=told)
    gallery = [(p, label) for p, label in zip(_pictures(result, view, 0), GROUP_LABELS, strict=True)]
    sources = ", ".join(f"face {i + 1}: {f.estimated_group.label}" for i, f in enumerate(result.faces))
    status = f"**Estimated current age group** — {sources}."
    if told is not None:
        status += f" Aged from the group you gave: **{told.label}**."
    if result.skipped_faces:
        status += f" {result.skipped_faces} smaller face(s) were skipped (at most {len(result.faces)} are aged)."
    faces = [f"Face {i + 1}" for i in range(len(result.faces))]
    picker = gr.update(choices=faces, value=faces[0], visible=len(faces) > 1)
    return gallery, status, picker, result


_recent_outputs: deque[Path] = deque()


def _output_folder() -> Path:
    """A new folder for one GIF or aged video; past the latest KEEP_GIFS, the oldest are deleted."""
    folder = Path(tempfile.mkdtemp(dir=GIF_FOLDER.name))
    _recent_outputs.append(folder)
    while len(_recent_outputs) > KEEP_GIFS:
        shutil.rmtree(_recent_outputs.popleft(), ignore_errors=True)
    return folder


@_user_errors
def animate(result: AgingResult | None) -> str | None:
    """An animated GIF through every age, blended between groups."""
    if result is None:
        return None
    gif = _output_folder() / "aging.gif"
    gif.write_bytes(result.gif())
    return str(gif)


def age_all(image, view: str = PHOTO, own: str = AUTO, progress=gr.Progress()):  # noqa: B008
    """Age every face in the photo to the six groups 0-18 ... 60+, with the GIF; `own` is the
    person's own age group ("auto": estimated)."""
    gallery, status, picker, result = age_photo(image, view, own, progress)
    return gallery, status, animate(result), picker, result


def age_example(image, progress=gr.Progress()):  # noqa: B008
    """Examples are cached lazily; Gradio 6.31 cannot cache a Dropdown update, so they skip the face picker."""
    gallery, status, gif, _picker, result = age_all(image, PHOTO, AUTO, progress)
    return gallery, status, gif, result


@_user_errors
def age_to(image, age: float = 5.0, own: str = AUTO):
    """The photo at one age position: 0 = 0-18, 1 = 19-29, ... 5 = 60+; fractions blend neighbours.
    `own`: the person's own age group, or "auto"."""
    image = _photo_path(image)
    if not image:
        raise gr.Error("Please upload a photo.")
    return ager().age(image, source_group=AgeGroup.parse(own)).render_at(float(age))


@_user_errors
def show_age(result: AgingResult | None, position: float, view: str, face: str | None):
    """Slider: re-render from the cached latents only; the generator takes milliseconds."""
    if result is None:
        return None
    photo = result.render_at(position)
    if view == FACE and result.faces:
        return result.aligned(_face_index(face), photo)
    return photo


@_user_errors(trim=False)
def age_live(frame: np.ndarray | None, age: float, own: str, session: dict) -> np.ndarray | None:
    """One webcam frame at the slider's age. `session` (this browser tab's gr.State) keeps the
    stream's LiveAger: each face's latent, mask and edits are made once, when it appears."""
    if frame is None:
        return None
    live: LiveAger | None = session.get("live")
    if live is None:
        from faceaging.live import LiveAger

        live = session["live"] = LiveAger(ager())
    return live.frame(frame, float(age), AgeGroup.parse(own))


@_user_errors
def age_video_file(video, age: float = 5.0, own: str = AUTO, progress=gr.Progress()):  # noqa: B008
    """A video file aged to one age position (0 = 0-18 ... 5 = 60+), sound kept; `own`: the
    person's own age group, or "auto"."""
    from faceaging.video import age_video

    video = _photo_path(video)
    if not video:
        raise gr.Error("Please upload a video.")
    out = _output_folder() / f"{Path(video).stem}_aged.mp4"
    age_video(
        ager(), video, out, float(age), AgeGroup.parse(own), lambda done, total: progress(done / total, "Aging frames")
    )
    return str(out)


def regallery(result: AgingResult | None, view: str, face: str | None):
    if result is None:
        return gr.skip()
    return [(p, label) for p, label in zip(_pictures(result, view, _face_index(face)), GROUP_LABELS, strict=True)]


def _age_slider(value: float, label: str = "Age: 0-18 … 60+", **options) -> gr.Slider:
    """An age position: 0 = 0-18 ... 5 = 60+, fractions blend neighbouring groups."""
    return gr.Slider(0, len(GROUP_LABELS) - 1, value=value, step=0.1, label=label, **options)


def _own_group(**options) -> gr.Dropdown:
    """The person's own age group, or "auto" (estimated from the photo)."""
    return gr.Dropdown([AUTO, *GROUP_LABELS], value=AUTO, **options)


with gr.Blocks(
    title="faceaging — see yourself at every age",
    analytics_enabled=False,
    delete_cache=(CACHE_HOURS * 3600, CACHE_HOURS * 3600),
) as demo:
    gr.Markdown(
        "# faceaging\nUpload a selfie and see yourself at every age, from 0-18 to 60+. "
        "Runs on a CPU; your photo is processed on this server and not kept."
    )
    state = gr.State()
    with gr.Tab("Photo"):
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(label="Your photo", type="filepath", sources=["upload", "webcam", "clipboard"])
                own = _own_group(label="Your age group", info="auto: estimated from the photo")
                view = gr.Radio([PHOTO, FACE], value=PHOTO, label="Show")
                face_picker = gr.Dropdown(label="Face", visible=False)
                run = gr.Button("Age me", variant="primary")
                status = gr.Markdown()
            with gr.Column(scale=2):
                # JPEG: encoding the six photos as PNG took longer than aging them (bench, README).
                gallery = gr.Gallery(
                    label="Six ages", elem_id="ages", columns=3, format="jpeg", object_fit="contain", height="auto"
                )
                slider = _age_slider(0, "Age: 0-18 … 19-29 … 30-39 … 40-49 … 50-59 … 60+")
                at_age = gr.Image(label="At the slider's age", elem_id="at-age", format="jpeg", interactive=False)
                # A file path is served as it is, so the browser plays the GIF in place (and can download it).
                gif = gr.Image(label="Aging animation", elem_id="gif", type="filepath", interactive=False)
        gr.Examples(
            examples=[[e] for e in EXAMPLES],
            inputs=[photo],
            outputs=[gallery, status, gif, state],
            fn=age_example,
            cache_examples=True,
            cache_mode="lazy",
            preprocess=False,
        )
    with gr.Tab("Live"):
        gr.Markdown(
            "Start your webcam and see yourself at the slider's age as you move. One face is aged live "
            "(the largest); the first frame with a new face takes a moment."
        )
        with gr.Row():
            webcam = gr.Image(
                label="Webcam",
                sources=["webcam"],
                streaming=True,
                type="numpy",
                webcam_options=WEBCAM,
                elem_id="live-webcam",
            )
            live_out = gr.Image(label="You at that age", streaming=True, format="jpeg", elem_id="live-out")
        with gr.Row():
            live_age = _age_slider(5, elem_id="live-age")
            live_own = _own_group(label="Your age group")
        live_session = gr.State({})
    with gr.Tab("Video"):
        with gr.Row():
            video_in = gr.Video(label="Your video (up to 60 s)", sources=["upload"], elem_id="video-in")
            video_out = gr.Video(label="Aged", elem_id="video-out", interactive=False)
        with gr.Row():
            video_age = _age_slider(5)
            video_own = _own_group(label="Your age group")
        video_run = gr.Button("Age the video", variant="primary")
    run.click(
        age_photo,
        [photo, view, own],
        [gallery, status, face_picker, state],
        api_visibility="private",
        preprocess=False,
        **PIPELINE,
    ).then(show_age, [state, slider, view, face_picker], at_age, api_visibility="private").then(
        animate, state, gif, api_visibility="private"
    )
    slider.change(
        show_age, [state, slider, view, face_picker], at_age, api_visibility="private", show_progress="hidden"
    )
    for control in (view, face_picker):
        control.change(regallery, [state, view, face_picker], gallery, api_visibility="private")
        control.change(show_age, [state, slider, view, face_picker], at_age, api_visibility="private")
    webcam.stream(
        age_live,
        [webcam, live_age, live_own, live_session],
        live_out,
        stream_every=LIVE_EVERY,
        time_limit=LIVE_SECONDS,
        api_name="age_live",
        show_progress="hidden",
        **LIVE,
    )
    video_run.click(
        age_video_file, [video_in, video_age, video_own], video_out, api_name="age_video", preprocess=False, **PIPELINE
    )
    # API-only endpoints. Hidden components give them typed inputs and outputs.
    with gr.Row(visible=False):
        api_photo = gr.Image(type="filepath")
        api_age = gr.Number(value=5.0)
        api_own = _own_group()
        api_out = gr.Image(format="png")
        api_age_all = gr.Button()
    api_age.submit(age_to, [api_photo, api_age, api_own], api_out, api_name="age_to", preprocess=False, **PIPELINE)
    # Everything in one call, GIF included, for API users (the page shows the gallery before the GIF).
    api_age_all.click(
        age_all,
        [photo, view, own],
        [gallery, status, gif, face_picker, state],
        api_name="age_all",
        preprocess=False,
        **PIPELINE,
    )

demo.queue(default_concurrency_limit=2, max_size=32)

if __name__ == "__main__":
    on_space = bool(os.environ.get("SPACE_ID"))
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if on_space else "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=MAX_UPLOAD,
        show_error=True,
        css=CSS,
    )
