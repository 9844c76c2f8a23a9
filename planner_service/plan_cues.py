"""What a valid plan still misses for this request, named for the LLM's one repair round: an
attached file no task reads, and a task type the request asks for by name (`CUES`: words that name
a task type outright; high precision, since a miss costs a repair round, not a wrong plan).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.catalog import TASK_TYPES
from shared.outputs import ArtifactRef
from shared.plan import ValidatedPlan

_LANGUAGES = ("spanish|french|german|italian|portuguese|dutch|swedish|norwegian|danish|finnish|polish|czech|"
              "romanian|russian|ukrainian|turkish|greek|arabic|hebrew|hindi|chinese|japanese|korean|vietnamese|catalan")
_LANGUAGE = f"(?:{_LANGUAGES})"  # "in English" is a reply's language, "into English" a translation
# "is it in Spanish?" asks which language a text is in, not for a translation
_IS_IN_LANGUAGE = re.compile(r"\b(?:is|are|was|were)\b[^.!?]{0,120}\bin " + _LANGUAGE + r"\b[^.!?]{0,20}\?")

CUES: list[tuple[str, re.Pattern[str], str]] = [
    ("automatic-speech-recognition", re.compile(r"\btranscri(?:be|ption|pt)|\bwrite (?:down|out) what\b|"
                                                 r"\bwhat (?:is|was|'s|gets|got) (?:said|spoken)\b"), "to transcribe"),
    ("translation", re.compile(r"\btranslat(?:e|ion|ing)\b|\binto (?:english|" + _LANGUAGES + r")\b|"
                               r"\bin " + _LANGUAGE + r"\b"), "to translate"),
    ("summarization", re.compile(r"\bsummar(?:y|ies|ise|ize|ised|ized|ising|izing)\b|\bgist\b|\btl;?dr\b|"
                                 r"\bcondense|\bboil (?:it |this |that )?down\b|\bin (?:one|a single) (?:line|sentence)\b|"
                                 r"\bshort(?:er)? version\b|\bshorten\b|\b(?:key|main) points\b|\bin a nutshell\b"),
     "for a summary"),
    ("text2text-generation", re.compile(r"\b(?:rewrite|rephrase|reword|paraphrase)\b|\bmore (?:formal|polite)\b|"
                                        r"\b(?:formal|polite|proper) (?:sentence|email|message|version|note)\b"),
     "to rewrite a text"),
    ("text-to-speech", re.compile(r"\b(?:read (?:it |this |that |them |the \w+ )?(?:aloud|out loud|out)|read out|aloud|"
                                  r"text[- ]to[- ]speech|narrat(?:e|ion)|spoken version|voice ?over)\b"), "for speech"),
    ("token-classification", re.compile(r"\bnamed entit|\bentities\b"), "for named entities"),
    ("sentence-similarity", re.compile(r"\bsimilarity\b|\bhow similar\b"), "for a similarity"),
    ("image-segmentation", re.compile(r"\bsegment(?:ation|ing|s)?\b"), "to segment"),
    ("language-detection", re.compile(r"\b(?:which|what) language\b|\bdetect the language\b"), "which language a text is in"),
    ("object-detection", re.compile(r"\b(?:detect|locate|find) (?:the |all |any )?objects\b|\bbounding box"),
     "to detect objects"),
    # a question about people in a picture: the person and face detector answers it, a classifier cannot
    ("object-detection", re.compile(r"\b(?:any|some)(?:one|body)\b|\bhow many (?:people|persons|faces)\b|"
                                    r"\b(?:any|the) (?:people|persons|faces)\b|\bis there a (?:person|face)\b"),
     "about the people in the picture"),
]



def request_problems(text: str, plan: ValidatedPlan, uploads: Mapping[str, ArtifactRef],
                     available: set[str]) -> list[str]:
    """What the valid plan still misses for this request, as precise repair messages."""
    problems: list[str] = []
    used: set[str] = set()
    for node in plan.nodes:
        for binding in node.inputs.values():
            if binding.type == "upload":
                used.add(binding.ref.id)
    for name, ref in uploads.items():
        if "/" in name:  # a file of an earlier turn: only when the user refers to it
            continue
        if ref.id not in used:
            readers = sorted(n for n in available if any(s.kind == ref.kind for s in TASK_TYPES[n].inputs.values()))
            hint = f" (tasks that take an {ref.kind}: {', '.join(readers)})" if readers else ""
            problems.append(f"the attached file {name} is not used by any task: give it to the task that should "
                            f"read it{hint}")
    lowered = text.lower()
    planned = {n.task for n in plan.nodes}
    for task, cue, word in CUES:
        if task in available and task not in planned and cue.search(lowered):
            if task == "automatic-speech-recognition" and not any(r.kind == "audio" for r in uploads.values()):
                continue
            if word == "about the people in the picture" and not any(r.kind == "image" for r in uploads.values()):
                continue
            if task == "language-detection" and "audio-classification" in planned:  # it names the spoken language
                continue
            if task == "translation" and _IS_IN_LANGUAGE.search(lowered) and not re.search(r"\btranslat", lowered):
                continue
            problems.append(f"the request asks {word} but the plan has no {task} task: add it, fed with the "
                            f"right input")
    return problems

