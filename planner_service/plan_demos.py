"""The planner's demonstration bank: requests with the plan hgq should make for them.

Two parts. `DEMOS` is written for hgq (not taken from any evaluation set; tests/test_plan_checks.py
keeps them apart): every task type served offline appears, in single tasks, chains and joins, with
the wording people use for it ("what is in this photo", "pull out the names", "read it to me").
`taskbench_demos()` (data/taskbench_demos.jsonl, built by scripts/build_taskbench_demos.py) is two
thirds of TaskBench's development split, its own requests and ground-truth plans converted to hgq's
format: how TaskBench-style requests chain tools. The third held out is what `hgq eval plans`
scores. The planner shows each request the few demonstrations closest to it (`demo_retrieval.py`),
so the bank can grow without making the prompt longer.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

Demo = tuple[str, list[dict[str, Any]]]


def _t(i: int, task: str, dep: list[int], **args: str) -> dict[str, Any]:
    return {"id": i, "task": task, "dep": dep or [-1], "args": args}


ASR, TTS, OCR = "automatic-speech-recognition", "text-to-speech", "image-to-text"
SUM, TRANS, TCLS = "summarization", "translation", "text-classification"
ICLS, SEG, DET, I2I = "image-classification", "image-segmentation", "object-detection", "image-to-image"
QA, DOCQA, NER, SIM = "question-answering", "document-question-answering", "token-classification", "sentence-similarity"
GEN, T2T, CHAT, LANG, ACLS = ("text-generation", "text2text-generation", "conversational", "language-detection",
                              "audio-classification")

DEMOS: list[Demo] = [
    ("Write down what is said in memo.wav, boil it down to a few lines and speak the short version out loud. "
     "[files: memo.wav (audio)]",
     [_t(0, ASR, [], audio="memo.wav"), _t(1, SUM, [0], text="<GENERATED>-0"), _t(2, TTS, [1], text="<GENERATED>-1")]),
    ("What text is written in a.png and in b.png? [files: a.png (image), b.png (image)]",
     [_t(0, OCR, [], image="a.png"), _t(1, OCR, [], image="b.png")]),
    ("Is the review in scan.png positive? Also read it aloud. [files: scan.png (image)]",
     [_t(0, OCR, [], image="scan.png"), _t(1, TCLS, [0], text="<GENERATED>-0"), _t(2, TTS, [0], text="<GENERATED>-0")]),
    ("Answer the question written on card.png using what is said in talk.wav. "
     "[files: card.png (image), talk.wav (audio)]",
     [_t(0, ASR, [], audio="talk.wav"), _t(1, OCR, [], image="card.png"),
      _t(2, QA, [0, 1], text="<GENERATED>-0", question="<GENERATED>-1")]),
    ("Read menu.jpg and translate it into Spanish. [files: menu.jpg (image)]",
     [_t(0, OCR, [], image="menu.jpg"), _t(1, TRANS, [0], text="<GENERATED>-0", target="Spanish")]),
    ("Hello! How are you today?", []),
    ("Thanks, that was helpful. Have a nice evening!", []),
    ("Who painted the Mona Lisa, and roughly when?", []),  # general knowledge: the LLM answers it, no task
    ("I took a picture, holiday.jpg, and I can't tell what the animal in it is. What does it show? "
     "[files: holiday.jpg (image)]",
     [_t(0, ICLS, [], image="holiday.jpg")]),
    ("My spreadsheet was saved as a screenshot, sales_table.png. Can you classify what kind of data that "
     "table holds? [files: sales_table.png (image)]",
     [_t(0, ICLS, [], image="sales_table.png")]),
    ("Please cut the person out of portrait.jpg so I can use them on another background. "
     "[files: portrait.jpg (image)]",
     [_t(0, SEG, [], image="portrait.jpg", output="cutout")]),
    ("Split garden.png into its regions so I can see which part is the main subject. [files: garden.png (image)]",
     [_t(0, SEG, [], image="garden.png")]),
    ("How many faces are in team.jpg? Draw boxes around them. [files: team.jpg (image)]",
     [_t(0, DET, [], image="team.jpg", labels="face")]),
    ("Locate the objects in desk.jpg and then write a friendly paragraph describing what was found. "
     "[files: desk.jpg (image)]",
     [_t(0, DET, [], image="desk.jpg"), _t(1, GEN, [0], text="<GENERATED>-0")]),
    ("Turn street.jpg into a pencil sketch. [files: street.jpg (image)]",
     [_t(0, I2I, [], image="street.jpg", style="sketch")]),
    ("Edit park.png so it is black and white, then find the people in the edited picture. [files: park.png (image)]",
     [_t(0, I2I, [], image="park.png", style="gray"), _t(1, DET, [0], image="<GENERATED>-0", labels="person")]),
    ("Show me the outlines (edges) in bridge.jpg. [files: bridge.jpg (image)]",
     [_t(0, I2I, [], image="bridge.jpg", style="canny")]),
    ("invoice.png is a scanned bill. What is the total amount due? [files: invoice.png (image)]",
     [_t(0, DOCQA, [], image="invoice.png", text="What is the total amount due?")]),
    ("There's a table in chart.png; which month had the highest revenue? [files: chart.png (image)]",
     [_t(0, DOCQA, [], image="chart.png", text="Which month had the highest revenue?")]),
    ("In which language is 'Obrigado pela ajuda, até amanhã' written?",
     [_t(0, LANG, [], text="Obrigado pela ajuda, até amanhã")]),
    ("Pull out the people, places and dates in this sentence: 'Angela Merkel visited Lagos on 3 May 2019.'",
     [_t(0, NER, [], text="Angela Merkel visited Lagos on 3 May 2019.")]),
    ("How close in meaning are 'The cat sat on the mat' and 'A cat was sitting on a rug'?",
     [_t(0, SIM, [], text="The cat sat on the mat", text2="A cat was sitting on a rug")]),
    ("Write a short poem about autumn rain.", [_t(0, GEN, [], text="A short poem about autumn rain")]),
    ("Could you draft an opening paragraph for my essay on renewable energy?",
     [_t(0, GEN, [], text="An opening paragraph for an essay on renewable energy")]),
    ("Rewrite this note so it sounds formal: 'hey, can't make it tmrw, sorry'",
     [_t(0, T2T, [], text="hey, can't make it tmrw, sorry", instruction="rewrite it formally")]),
    ("A friend just texted me 'I failed my driving test again.' What would be a kind reply?",
     [_t(0, CHAT, [], text="I failed my driving test again.")]),
    ("Is anyone speaking in recording.wav, and in which language? [files: recording.wav (audio)]",
     [_t(0, ACLS, [], audio="recording.wav")]),
    ("Listen to lecture.mp3 and list the people and organisations it mentions. [files: lecture.mp3 (audio)]",
     [_t(0, ASR, [], audio="lecture.mp3"), _t(1, NER, [0], text="<GENERATED>-0")]),
    ("Give me the gist of this paragraph and tell me whether its tone is positive: 'The new park opened on "
     "Saturday. Families crowded the lawns and the cafe ran out of ice cream by noon.'",
     [_t(0, SUM, [], text="The new park opened on Saturday. Families crowded the lawns and the cafe ran out of "
                          "ice cream by noon."),
      _t(1, TCLS, [], text="The new park opened on Saturday. Families crowded the lawns and the cafe ran out of "
                           "ice cream by noon.")]),
    ("Translate the German sentence 'Der Zug hat zehn Minuten Verspätung' into English and say it out loud.",
     [_t(0, TRANS, [], text="Der Zug hat zehn Minuten Verspätung", target="English"),
      _t(1, TTS, [0], text="<GENERATED>-0")]),
    ("Here's poster.png. Read the text, tell me which language it is in, and translate it into English. "
     "[files: poster.png (image)]",
     [_t(0, OCR, [], image="poster.png"), _t(1, LANG, [0], text="<GENERATED>-0"),
      _t(2, TRANS, [0], text="<GENERATED>-0", target="English")]),
    ("Using this text, answer who founded the company: 'Northwind was founded in 1998 by Ada Park and "
     "Luis Romero in a garage in Porto.'",
     [_t(0, QA, [], text="Northwind was founded in 1998 by Ada Park and Luis Romero in a garage in Porto.",
         question="Who founded the company?")]),
    ("letter.png is a photo of a letter. Get its text and then tell me what date the meeting is on. "
     "[files: letter.png (image)]",
     [_t(0, OCR, [], image="letter.png"), _t(1, QA, [0], text="<GENERATED>-0", question="What date is the meeting on?")]),
    ("Classify the picture pet.jpg, then write a little story about whatever it shows. [files: pet.jpg (image)]",
     [_t(0, ICLS, [], image="pet.jpg"), _t(1, GEN, [0], text="<GENERATED>-0")]),
    ("Does the text on sign1.png say the same thing as 'No parking on weekends'? [files: sign1.png (image)]",
     [_t(0, OCR, [], image="sign1.png"), _t(1, SIM, [0], text="<GENERATED>-0", text2="No parking on weekends")]),
    ("Take voice.wav, write down what is said, put it into French and read the French version aloud. "
     "[files: voice.wav (audio)]",
     [_t(0, ASR, [], audio="voice.wav"), _t(1, TRANS, [0], text="<GENERATED>-0", target="French"),
      _t(2, TTS, [1], text="<GENERATED>-1")]),
    ("Is this tweet about sports, politics or technology? 'The new chip doubles battery life.'",
     [_t(0, TCLS, [], text="The new chip doubles battery life.", labels="sports, politics, technology")]),
    ("Separate the main object in room.jpg from the background, then tell me what that object is. "
     "[files: room.jpg (image)]",
     [_t(0, SEG, [], image="room.jpg", output="cutout"), _t(1, ICLS, [0], image="<GENERATED>-0")]),
    ("report.png is one page of a report. Summarise it and read the summary to me. [files: report.png (image)]",
     [_t(0, OCR, [], image="report.png"), _t(1, SUM, [0], text="<GENERATED>-0"), _t(2, TTS, [1], text="<GENERATED>-1")]),
    ("What kind of scene is photo.jpg? After that, let's chat about it. [files: photo.jpg (image)]",
     [_t(0, ICLS, [], image="photo.jpg"), _t(1, CHAT, [0], text="<GENERATED>-0")]),
    ("Generate a product description for a steel water bottle, then translate it into Spanish.",
     [_t(0, GEN, [], text="A product description for a steel water bottle"),
      _t(1, TRANS, [0], text="<GENERATED>-0", target="Spanish")]),
    ("Please read out this announcement: 'The library closes at 6 pm today.'",
     [_t(0, TTS, [], text="The library closes at 6 pm today.")]),
    ("What's said in call.wav, and does the caller sound happy or annoyed? [files: call.wav (audio)]",
     [_t(0, ASR, [], audio="call.wav"), _t(1, TCLS, [0], text="<GENERATED>-0")]),
    ("Do shot_a.jpg and shot_b.jpg show the same kind of thing? [files: shot_a.jpg (image), shot_b.jpg (image)]",
     [_t(0, ICLS, [], image="shot_a.jpg"), _t(1, ICLS, [], image="shot_b.jpg"),
      _t(2, SIM, [0, 1], text="<GENERATED>-0", text2="<GENERATED>-1")]),
    ("Summarise the transcript of podcast.wav and then pick out the names in the summary. "
     "[files: podcast.wav (audio)]",
     [_t(0, ASR, [], audio="podcast.wav"), _t(1, SUM, [0], text="<GENERATED>-0"), _t(2, NER, [1], text="<GENERATED>-1")]),
    ("From the scanned form in form.png, find the applicant's name, then check which language the form uses. "
     "[files: form.png (image)]",
     [_t(0, DOCQA, [], image="form.png", text="What is the applicant's name?"),
      _t(1, OCR, [], image="form.png"), _t(2, LANG, [1], text="<GENERATED>-1")]),
    ("Make a short narration about the ocean and turn it into speech.",
     [_t(0, GEN, [], text="A short narration about the ocean"), _t(1, TTS, [0], text="<GENERATED>-0")]),
    # longer requests that spell out several steps, each working on the one before
    ("I have a voice memo from a client call saved as notes.wav. Could you first turn it into text, then "
     "condense that into a short summary, and finally translate the summary into German for my colleague? "
     "[files: notes.wav (audio)]",
     [_t(0, ASR, [], audio="notes.wav"), _t(1, SUM, [0], text="<GENERATED>-0"),
      _t(2, TRANS, [1], text="<GENERATED>-1", target="German")]),
    ("A colleague wrote 'La riunione è spostata a giovedì pomeriggio' in our chat. Can you put that into "
     "English and then tell me how close the English version is to 'The meeting moved to Thursday afternoon'?",
     [_t(0, TRANS, [], text="La riunione è spostata a giovedì pomeriggio", target="English"),
      _t(1, SIM, [0], text="<GENERATED>-0", text2="The meeting moved to Thursday afternoon")]),
    ("Here's kitchen.jpg. Work out what the picture shows, then write me a friendly chatty reply about it, "
     "and after that read the reply out loud. [files: kitchen.jpg (image)]",
     [_t(0, ICLS, [], image="kitchen.jpg"), _t(1, CHAT, [0], text="<GENERATED>-0"),
      _t(2, TTS, [1], text="<GENERATED>-1")]),
    ("My scanned receipt is receipt.png. Could you find out which shop issued it, and then pick out any "
     "names of people, places or companies in that answer? [files: receipt.png (image)]",
     [_t(0, DOCQA, [], image="receipt.png", text="Which shop issued this receipt?"),
      _t(1, NER, [0], text="<GENERATED>-0")]),
    ("I recorded the history seminar as seminar.wav. From what is said there, when was the treaty signed? "
     "Please give me the answer as audio too. [files: seminar.wav (audio)]",
     [_t(0, ASR, [], audio="seminar.wav"), _t(1, QA, [0], text="<GENERATED>-0", question="When was the treaty signed?"),
      _t(2, TTS, [1], text="<GENERATED>-1")]),
    ("Look at yard.jpg and find the people in it, then write a short paragraph about what was found and "
     "translate that paragraph into French. [files: yard.jpg (image)]",
     [_t(0, DET, [], image="yard.jpg", labels="person"), _t(1, GEN, [0], text="<GENERATED>-0"),
      _t(2, TRANS, [1], text="<GENERATED>-1", target="French")]),
    ("Here is a match report: 'Rovers led 2-0 at half time, but United scored three times after the break "
     "to win.' Shorten it first, and then using the short version tell me who won.",
     [_t(0, SUM, [], text="Rovers led 2-0 at half time, but United scored three times after the break to win."),
      _t(1, QA, [0], text="<GENERATED>-0", question="Who won?")]),
    ("Could you turn the photo of my bike, bike.jpg, into a pencil drawing and then tell me what the drawing "
     "looks like to an image classifier? [files: bike.jpg (image)]",
     [_t(0, I2I, [], image="bike.jpg", style="sketch"), _t(1, ICLS, [0], image="<GENERATED>-0")]),
    # shown only where a worker serves them (a diffusers model: ControlNet, text-to-video)
    ("Paint an astronaut on the moon standing exactly the way the woman stands in dancer.jpg. "
     "[files: dancer.jpg (image)]",
     [_t(0, "openpose-control", [], image="dancer.jpg"),
      _t(1, "openpose-text-to-image", [0], image="<GENERATED>-0", text="an astronaut standing on the moon")]),
    ("Keep the outlines of house.png but make it look like a snowy cabin in a pine forest. "
     "[files: house.png (image)]",
     [_t(0, "canny-control", [], image="house.png"),
      _t(1, "canny-text-to-image", [0], image="<GENERATED>-0", text="a snowy cabin in a pine forest")]),
    ("Make a short clip of a paper boat drifting down a rainy street.",
     [_t(0, "text-to-video", [], text="a paper boat drifting down a rainy street")]),
]


TASKBENCH_FILE = Path(__file__).resolve().parent / "data" / "taskbench_demos.jsonl"


@lru_cache(maxsize=1)
def taskbench_demos() -> tuple[Demo, ...]:
    """The TaskBench part of the bank (empty when the file is missing)."""
    if not TASKBENCH_FILE.exists():
        return ()
    out: list[Demo] = []
    for line in TASKBENCH_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            out.append((str(obj["request"]), list(obj["tasks"])))
    return tuple(out)


@lru_cache(maxsize=1)
def bank() -> tuple[Demo, ...]:
    """Every demonstration retrieval chooses from: hgq's own, then TaskBench's."""
    return (*DEMOS, *taskbench_demos())


def request_text(demo: Demo) -> str:
    """A demonstration's request without the files note the planner appends."""
    return demo[0].split(" [files:")[0].strip()


def bank_requests() -> frozenset[str]:
    """The request text of every demonstration: an evaluation skips these."""
    return frozenset(request_text(d) for d in bank())
