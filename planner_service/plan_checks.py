"""Deterministic work on an LLM's plan, before and after validation.

`normalise` fixes what needs no judgement, so that a small LLM's slips cost no repair round:
dependencies follow the data (a task depends on exactly the tasks whose output its args
reference), a `dep` on a missing task or on itself is dropped, a task reading a file the request
neither attaches nor names is dropped, and so is a final text-to-speech or text-classification task
that nothing in the request asks for (no word about audio, or about labels or sentiment),
an image step nobody asked for that only feeds another task (segmentation before OCR) is left
out, identical repeated tasks are kept once (and at most MAX_SAME of one type over one input), a question-answering task with no text to read (a
knowledge question: nothing attached, quoted or pointed at) is left to the answer stage's LLM,
document-question-answering with no image anywhere becomes
question-answering over its text, an arg under a wrong name fills
the task's one empty input slot of its kind, and an input that references its own output (or a
value of the wrong kind) is pointed at the latest earlier task producing that kind, else at the
one attached file of that kind, else (text) at the passage the request quotes. A missing media
input takes the one attached file of its kind. What a valid plan still misses for this request is
named by planner_service/plan_cues.py.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from planner_service.plan_sequence import chain_sequenced_steps
from shared.catalog import TASK_TYPES
from shared.outputs import ArtifactRef
from shared.plan import PlanTask, find_upload
from shared.plan import generated_ref as _ref

_QUOTED = re.compile(r"'([^']{3,})'|\"([^\"]{3,})\"|“([^”]{3,})”")


def _quoted(request: str) -> str | None:
    """The longest quoted passage of the request (the text it asks to work on), if any."""
    found = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(request)]
    found = [q for q in found if not re.fullmatch(r"[\w\-./]+\.\w{2,4}", q)]  # not a file name
    return max(found, key=len) if found else None


def _kind_of(value: object, by_id: Mapping[int, PlanTask], uploads: Mapping[str, ArtifactRef]) -> set[str]:
    """The kinds a value can feed: an upload's kind, a referenced task's outputs, or text."""
    ref = _ref(value)
    if ref is not None:
        producer = by_id.get(ref)
        spec = TASK_TYPES.get(producer.task) if producer else None
        return set(spec.produces) if spec else set()
    upload = find_upload(str(value), uploads)
    return {upload.kind} if upload is not None else {"text"}


_MEDIA_NAME = re.compile(r"[\w\-./]+\.[A-Za-z0-9]{2,5}")


# Task types a small LLM adds by habit; kept only when the request says something that asks for them.
ASKED_FOR: dict[str, re.Pattern[str]] = {
    "text-to-speech": re.compile(r"aloud|out loud|\bread (?:it|this|that|them|the \w+)?\s*(?:out|to me)|\bspeak|spoken|"
                                 r"speech|voice|audio|listen|\bhear|narrat|pronounc|\bsay\b|\bsound|podcast|"
                                 r"\.(?:wav|mp3|ogg|flac)\b|\btts\b", re.I),
    "text-classification": re.compile(r"sentiment|classif|categor|positive|negative|\btone\b|\bmood|label|topic|"
                                      r"emotion|\bfeel|opinion|spam|\btype of\b|\bkind of\b|genre|intent|toxic|"
                                      r"polarity|attitude|happy|angry|annoyed|\bsad\b|\bor\b", re.I),
}


def _dedupe(tasks: list[PlanTask]) -> list[PlanTask]:
    """Identical tasks (same type, same args) kept once; references to a copy point at the first.
    A small LLM sometimes repeats one task until its output budget runs out."""
    first: dict[str, int] = {}
    alias: dict[int, int] = {}
    for t in tasks:
        key = t.task + "\0" + repr(sorted((k, str(v)) for k, v in t.args.items()))
        if key in first and not any(_ref(v) == t.id for v in t.args.values()):
            alias[t.id] = first[key]
        else:
            first.setdefault(key, t.id)
    if not alias:
        return tasks

    def point(v: object) -> object:
        r = _ref(v)
        return f"<GENERATED>-{alias[r]}" if r is not None and r in alias else v

    return [t.model_copy(update={"args": {k: point(v) for k, v in t.args.items()}}) for t in tasks if t.id not in alias]


MAX_SAME = 4  # tasks of one type over one input; more is a small LLM looping until its budget ends


def _runaway(tasks: list[PlanTask]) -> list[PlanTask]:
    """Past MAX_SAME tasks of one type reading the same first input, the rest that nothing reads go
    ("translate it into French, German and Spanish" is three; nine QA tasks over one text is a loop)."""
    used = {r for t in tasks for v in t.args.values() if (r := _ref(v)) is not None and r != t.id}
    seen: dict[tuple[str, str], int] = {}
    out = []
    for t in tasks:
        spec = TASK_TYPES.get(t.task)
        first = next(iter(spec.inputs), None) if spec else None
        key = (t.task, str(t.args.get(first))) if first else (t.task, "")
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= MAX_SAME or t.id in used:
            out.append(t)
    return out


def _unasked(tasks: list[PlanTask], request: str, uploads: Mapping[str, ArtifactRef] | None = None) -> set[int]:
    """Leaf tasks of a habitual type (ASKED_FOR) that nothing in the request asks for (the name of an
    attached file is no request: 'transcribe memo.wav' asks for no speech)."""
    if not request:
        return set()
    for name in sorted(uploads or {}, key=len, reverse=True):
        request = request.replace(name, " ")
    used = {r for t in tasks for v in t.args.values() if (r := _ref(v)) is not None and r != t.id}
    return {t.id for t in tasks if t.id not in used and (cue := ASKED_FOR.get(t.task)) and not cue.search(request)}


# An image step a small LLM puts before another task by habit ("say it out loud" after reading a
# sign: segmentation, then OCR of the mask); kept only when the request asks for it.
PASSED_THROUGH: dict[str, re.Pattern[str]] = {
    "image-segmentation": re.compile(r"segment|mask|\bcut|separat|isolat|background|foreground|subject|outline|"
                                     r"region|silhouette|remove|extract|object|person|people|shape|area|pixel", re.I),
}


def _bypass_unasked(tasks: list[PlanTask], request: str) -> list[PlanTask]:
    """An unasked image step (PASSED_THROUGH) that feeds other tasks is left out: they read its
    input instead."""
    used = {r for t in tasks for v in t.args.values() if (r := _ref(v)) is not None and r != t.id}
    passed: dict[int, object] = {}
    for t in tasks:
        cue = PASSED_THROUGH.get(t.task)
        if cue is not None and t.id in used and not cue.search(request) and isinstance(t.args.get("image"), str):
            passed[t.id] = t.args["image"]
    if not passed:
        return tasks
    return [t.model_copy(update={"args": {k: (passed[r] if (r := _ref(v)) in passed else v) for k, v in t.args.items()}})
            for t in tasks if t.id not in passed]


def _phantom(t: PlanTask, uploads: Mapping[str, ArtifactRef], request: str, by_kind: Mapping[str, list[str]]) -> bool:
    """A task whose image/audio input is a file the request neither attaches nor names, with no
    attached file of that kind to take instead: a file name copied from a demonstration."""
    spec = TASK_TYPES.get(t.task)
    if spec is None:
        return False
    for name, slot in spec.inputs.items():
        value = t.args.get(name)
        if (slot.kind != "text" and isinstance(value, str) and _ref(value) is None and _MEDIA_NAME.fullmatch(value.strip())
                and find_upload(value, uploads) is None and not by_kind.get(slot.kind)
                and value.strip().lower() not in request.lower()):
            return True
    return False


# Words that point at a text the user gives (or gave): a question about it is no knowledge question.
_GIVES_TEXT = re.compile(r"\b(?:text|passage|paragraph|article|document|context|according|based on|using|"
                         r"below|above|following|story|note|letter|e-?mail|message|script|transcript|file|"
                         r"this|these|it|that)\b", re.I)
_WORD = re.compile(r"[a-z0-9']+")


def _knowledge_question(t: PlanTask, uploads: Mapping[str, ArtifactRef], request: str) -> bool:
    """question-answering with no text to answer from: the request attaches, quotes and points at
    no text ("who wrote Romeo and Juliet?"), and the task's context is the question itself or text
    the LLM wrote (little of it is in the request). The answer stage's LLM answers such a question;
    a QA model would only find a span in a context the planner invented."""
    if t.task != "question-answering" or not request:
        return False
    context = t.args.get("text")
    if (any("/" not in name for name in uploads) or _ref(context) is not None or _quoted(request)
            or _GIVES_TEXT.search(request) or _MEDIA_NAME.search(request)
            or (isinstance(context, str) and find_upload(context, uploads) is not None)):
        return False
    asked = set(_WORD.findall(str(t.args.get("question") or "").lower()))
    given = set(_WORD.findall(str(context or "").lower())) - asked
    return len(given & set(_WORD.findall(request.lower()))) < 6


def _as_text_qa(t: PlanTask, uploads: Mapping[str, ArtifactRef], has_image: bool) -> PlanTask:
    """document-question-answering with no image anywhere (the document is text: a quoted passage, a
    .txt the request names) is question-answering over that text."""
    if t.task != "document-question-answering" or has_image:
        return t
    image = t.args.get("image")
    if isinstance(image, str) and find_upload(image, uploads) is not None:
        return t  # an upload of another kind: validation names the mismatch
    args = {"question": t.args.get("text", "")}  # no image anywhere: whatever it points at is text
    if image:
        args["text"] = image
    return t.model_copy(update={"task": "question-answering", "args": args})


def _spoken_language(t: PlanTask, uploads: Mapping[str, ArtifactRef], tasks: list[PlanTask]) -> PlanTask:
    """language-detection with no text to read (its own output, or a recording's name) while one
    recording is attached and nothing transcribes it: the language spoken in it, which
    audio-classification names."""
    if t.task != "language-detection":
        return t
    audio = [name for name, ref in uploads.items() if ref.kind == "audio" and "/" not in name]
    value = t.args.get("text")
    no_text = _ref(value) == t.id or (isinstance(value, str) and value in audio)
    transcribed = any(o.task == "automatic-speech-recognition" for o in tasks)
    if len(audio) != 1 or not no_text or transcribed:
        return t
    return t.model_copy(update={"task": "audio-classification", "args": {"audio": audio[0]}, "dep": [-1]})


_BACK_REF = re.compile(r"\b(?:that|it|this|these|those|them|the (?:same |last |new |edited |previous )?"
                       r"(?:picture|image|photo|result|output|file|one|audio|recording|clip|version))\b", re.I)


def follow_back_references(tasks: list[PlanTask], uploads: Mapping[str, ArtifactRef], request: str,
                           latest: Mapping[str, str]) -> list[PlanTask]:
    """Multi-turn: "make that black and white" means the latest file of that kind (the previous
    turn's output), not an older one the planner picked, unless the request names the older file.
    `latest`: kind -> name of the newest earlier-turn file of that kind."""
    if not latest or not _BACK_REF.search(request):
        return tasks
    lowered = request.lower()
    out = []
    for t in tasks:
        spec = TASK_TYPES.get(t.task)
        args = dict(t.args)
        for name, slot in (spec.inputs.items() if spec else []):
            value = args.get(name)
            newest = latest.get(slot.kind)
            if (isinstance(value, str) and newest and value != newest and _ref(value) is None
                    and find_upload(value, uploads) is not None and value.lower() not in lowered
                    and find_upload(newest, uploads) is not None):
                args[name] = newest
        out.append(t.model_copy(update={"args": args}) if args != t.args else t)
    return out


READERS = {"audio": ("automatic-speech-recognition", "audio"), "image": ("image-to-text", "image")}


def read_unread_file(tasks: list[PlanTask], uploads: Mapping[str, ArtifactRef], request: str,
                     available: Collection[str] = ()) -> list[PlanTask]:
    """A text input that points at its own task's output (or at no task), with no earlier task of
    text to take and no quoted passage, while exactly one attached recording or picture is read by
    no task: the missing step is reading that file ("write out what I said in memo.wav" planned as
    text-to-speech of its own output). A reading task is added and the input points at it."""
    by_id = {t.id: t for t in tasks}
    read = {ref.id for t in tasks for v in t.args.values() if (ref := find_upload(str(v), uploads)) is not None}
    unread = [(name, ref.kind) for name, ref in uploads.items()
              if "/" not in name and ref.kind in READERS and ref.id not in read]
    if not tasks or len(unread) != 1 or _quoted(request):
        return tasks
    name, kind = unread[0]
    reader, slot_name = READERS[kind]
    if available and reader not in available:
        return tasks
    new_id = max(by_id) + 1
    out, added = [], False
    for t in tasks:
        spec = TASK_TYPES.get(t.task)
        args = dict(t.args)
        for slot, spec_slot in (spec.inputs.items() if spec and not added else []):
            points = _ref(args.get(slot))
            earlier = [o for o in tasks if o.id < t.id and "text" in getattr(TASK_TYPES.get(o.task), "produces", ())]
            if spec_slot.kind == "text" and points is not None and (points == t.id or points not in by_id) \
                    and not earlier:
                args[slot] = f"<GENERATED>-{new_id}"
                added = True
        out.append(t.model_copy(update={"args": args}) if args != t.args else t)
    if not added:
        return tasks
    return [PlanTask(id=new_id, task=reader, dep=[-1], args={slot_name: name}), *out]


NUMBER_PARAMS = frozenset({"top_k"})  # literal args that are whole numbers
_SAYS_MAP = re.compile(r"\b(?:maps?|skeletons?|control (?:image|map)s?|depth image)\b", re.I)
_SENTIMENT_WORDS = re.compile(r"^(?:the )?(?:sentiment|polarity|opinion|attitude|tone|mood|feeling)s?$", re.I)
_EMOTIONS = "joy, sadness, anger, fear, surprise, love"


def _candidate_labels(labels: str) -> str | None:
    """Zero-shot classification needs two candidate labels or more. A lone dimension is not a label
    set: "sentiment" is what the default sentiment model tells (None: no labels), "emotion" gets the
    common emotions; a lone label X is read as "X, not X" (is it spam?)."""
    given = [label.strip() for label in labels.split(",") if label.strip()]
    if len(given) >= 2:
        return labels
    if not given or _SENTIMENT_WORDS.match(given[0]):
        return None
    if re.fullmatch(r"(?:the )?emotions?", given[0], re.I):
        return _EMOTIONS
    return f"{given[0]}, not {given[0]}"


def control_maps_first(tasks: list[PlanTask], uploads: Mapping[str, ArtifactRef], request: str,
                       available: Collection[str]) -> list[PlanTask]:
    """An X-text-to-image task given a photo (an upload) gets the photo's X control map first, as
    HuggingGPT chains them ("a knight in this pose": openpose-control, then openpose-text-to-image),
    unless the request says the file already is a map, or X-control is not served."""
    out = list(tasks)
    next_id = max((t.id for t in tasks), default=-1) + 1
    for i, t in enumerate(tasks):
        control = t.task.removesuffix("-text-to-image") + "-control"
        image = t.args.get("image")
        if (not t.task.endswith("-text-to-image") or t.task == "text-to-image" or control not in available
                or not isinstance(image, str) or image not in uploads or _SAYS_MAP.search(request)):
            continue
        out.append(PlanTask(id=next_id, task=control, dep=[-1], args={"image": image}))
        out[i] = t.model_copy(update={"args": {**t.args, "image": f"<GENERATED>-{next_id}"},
                                      "dep": sorted({*[d for d in t.dep if d >= 0], next_id})})
        next_id += 1
    return out


def normalise(tasks: list[PlanTask], uploads: Mapping[str, ArtifactRef], request: str = "",
              latest: Mapping[str, str] | None = None, available: Collection[str] = (),
              earlier_text: str | None = None) -> list[PlanTask]:
    """The plan with its no-judgement slips fixed (a new list; the input is not changed).
    `earlier_text`: what the previous turn read out of a file (a text input pointing nowhere
    takes it, when nothing in this plan or request is text to take)."""
    tasks = follow_back_references(tasks, uploads, request, latest or {})
    tasks = control_maps_first(tasks, uploads, request, available)
    by_kind: dict[str, list[str]] = {}
    for name, ref in uploads.items():
        if "/" not in name:
            by_kind.setdefault(ref.kind, []).append(name)
    # tasks reading a file nobody gave go; what referenced them is re-pointed below like any bad ref
    tasks = [t for t in tasks if not _phantom(t, uploads, request, by_kind)]
    tasks = _runaway(_dedupe(tasks))
    tasks = _bypass_unasked(tasks, request)
    unasked = _unasked(tasks, request, uploads)
    if len(unasked) < len(tasks):  # never empties the plan: a lone task is the LLM's reading of the request
        tasks = [t for t in tasks if t.id not in unasked]
    # a knowledge question goes, even when it was the plan's only task: the LLM answers it itself
    tasks = [t for t in tasks if not _knowledge_question(t, uploads, request)]
    has_image = bool(by_kind.get("image")) or any(
        "image" in TASK_TYPES[t.task].produces for t in tasks if t.task in TASK_TYPES)
    tasks = [_as_text_qa(t, uploads, has_image) for t in tasks]
    tasks = [_spoken_language(t, uploads, tasks) for t in tasks]
    tasks = chain_sequenced_steps(read_unread_file(tasks, uploads, request, available), request)
    by_id = {t.id: t for t in tasks}
    out: list[PlanTask] = []
    for t in tasks:
        spec = TASK_TYPES.get(t.task)
        if spec is None:
            out.append(t)
            continue
        args = dict(t.args)
        for name in NUMBER_PARAMS & set(args):  # "top_k": ":5" or "5 labels" -> "5"; no digits: the default
            written = str(args[name]).strip()
            if not written.isdigit():
                digits = re.search(r"\d+", written)
                if digits:
                    args[name] = digits.group()
                else:
                    del args[name]
        if t.task == "text-classification" and "labels" in args:
            if (labels := _candidate_labels(str(args["labels"]))) is None:
                del args["labels"]
            else:
                args["labels"] = labels
        # an arg under a name the task does not have fills its empty input slot of the value's kind
        for name in [n for n in args if n not in spec.inputs and n not in spec.params]:
            kinds = _kind_of(args[name], by_id, uploads)
            empty = [n for n, s in spec.inputs.items() if n not in args and s.kind in kinds]
            if len(empty) == 1:
                args[empty[0]] = args.pop(name)
        for name, slot in spec.inputs.items():
            value = args.get(name)
            if value is None:
                # a missing media input when the request attached exactly one file of that kind
                if slot.required and slot.kind != "text" and len(by_kind.get(slot.kind, [])) == 1:
                    args[name] = by_kind[slot.kind][0]
                continue
            if slot.kind in _kind_of(value, by_id, uploads) and _ref(value) != t.id:
                continue
            # its own output, or a value of the wrong kind: the latest earlier producer of that kind,
            # else the one attached file of that kind, else (text) the passage the request quotes
            if _ref(value) is None and slot.kind == "text":
                continue  # literal text is text
            earlier = [o.id for o in tasks if o.id < t.id and o.task in TASK_TYPES
                       and slot.kind in TASK_TYPES[o.task].produces]
            if earlier:
                args[name] = f"<GENERATED>-{earlier[-1]}"
            elif len(by_kind.get(slot.kind, [])) == 1:
                args[name] = by_kind[slot.kind][0]
            elif slot.kind == "text" and (quoted := _quoted(request)):
                args[name] = quoted
            elif slot.kind == "text" and earlier_text:
                args[name] = earlier_text
        refs = {r for v in args.values() if (r := _ref(v)) is not None and r in by_id and r != t.id}
        # a dep without a reference carries no data: the task need not wait, and it is no link
        out.append(t.model_copy(update={"args": args, "dep": sorted(refs) or [-1]}))
    return out
