"""ControlNet control maps made on the CPU, under HuggingGPT's task names: canny-control (OpenCV's
Canny edges) and openpose-control (MediaPipe BlazePose drawn as OpenPose skeletons). They are the
same pictures as image-to-image's 'canny' and 'pose' styles, offered as the task types a
ControlNet plan chains from ("a picture of a girl in this pose": openpose-control, then
openpose-text-to-image). depth, hed and seg maps need a model: declare one in HGQ_MODELS_FILE
(for instance a transformers depth-estimation or image-segmentation pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.outputs import ExpertResult
from workers.expert import InputValue, register
from workers.vision.segmentation_experts import OpenCVFilters, PoseMap


@register
class CannyControl(OpenCVFilters):
    model_id = "hgq/canny-control"
    task = "canny-control"
    description = "OpenCV Canny edge map (white edges on black), the ControlNet canny control image"
    param_choices = {}  # noqa: RUF012 - a class constant, as on the base class

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        return super().run({"image": inputs.get("image", "")}, {"style": "canny"})


@register
class OpenposeControl(PoseMap):
    model_id = "hgq/openpose-control"
    task = "openpose-control"
    description = ("MediaPipe BlazePose (CPU): the body skeletons of the people in a photo drawn OpenPose-style on "
                   "black, the ControlNet openpose control image")
    required_params = frozenset()
    param_choices = {}  # noqa: RUF012 - a class constant, as on the base class

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        return super().run(inputs, {"style": "pose"})
