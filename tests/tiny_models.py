"""Tiny models with random weights, built from configs by the tests themselves (no network) and
saved with save_pretrained into a model folder, as a user's HGQ_MODEL_DIR would hold real ones.

Each is a few hundred kB: the outputs are nonsense, their types and shapes are what the tests check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORDS = ["a", "the", "cat", "dog", "photo", "of", "on", "in", "red", "blue", "sits", "grass", "yes", "no", "two"]


def word_tokenizer(model_max_length: int = 16, bert: bool = False) -> Any:
    """A word-level fast tokenizer over WORDS, written by the test (PreTrainedTokenizerFast)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]", "[EOS]"]
    vocab = {w: i for i, w in enumerate(special + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bert:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", bos_token="[BOS]", eos_token="[EOS]",
                                   model_max_length=model_max_length)


def _vocab_size() -> int:
    return 6 + len(WORDS)


def captioner(path: Path) -> Path:
    """ViT encoder + GPT-2 decoder (VisionEncoderDecoder, like nlpconnect/vit-gpt2-image-captioning)."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tok = word_tokenizer()
    enc = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32,
                    patch_size=8)
    dec = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=_vocab_size(), n_positions=64,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                     add_cross_attention=True, is_decoder=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    config.decoder_start_token_id, config.pad_token_id = tok.bos_token_id, tok.pad_token_id
    config.eos_token_id = tok.eos_token_id
    model = VisionEncoderDecoderModel(config=config)
    model.generation_config.decoder_start_token_id = tok.bos_token_id
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    # random weights: make it say a few words (never a special token) so the caption is not empty
    model.generation_config.min_new_tokens = 3
    model.generation_config.suppress_tokens = [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id,
                                               tok.sep_token_id, tok.bos_token_id]
    model.save_pretrained(path)
    tok.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def detr(path: Path) -> Path:
    """DETR with a tiny ResNet backbone (no timm), 5 object queries, 3 classes."""
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                            out_features=["stage2"], num_channels=3)
    config = DetrConfig(use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False,
                        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=5,
                        num_labels=3, id2label={0: "cat", 1: "dog", 2: "person"},
                        label2id={"cat": 0, "dog": 1, "person": 2})
    DetrForObjectDetection(config).save_pretrained(path)
    DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}).save_pretrained(path)
    return path


def vilt(path: Path) -> Path:
    """ViLT answering over 3 answers (like dandelin/vilt-b32-finetuned-vqa)."""
    from transformers import ViltConfig, ViltForQuestionAnswering, ViltImageProcessor, ViltProcessor

    answers = {0: "yes", 1: "no", 2: "two"}
    config = ViltConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                        image_size=64, patch_size=32, max_position_embeddings=40, vocab_size=_vocab_size(),
                        num_labels=3, id2label=answers, label2id={v: k for k, v in answers.items()},
                        max_image_length=-1)
    ViltForQuestionAnswering(config).save_pretrained(path)
    image = ViltImageProcessor(size={"shortest_edge": 64}, size_divisor=32)
    ViltProcessor(image_processor=image, tokenizer=word_tokenizer(40, bert=True)).save_pretrained(path)
    return path


def dpt(path: Path) -> Path:
    """DPT depth estimation (like Intel/dpt-large), 32x32 input."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                       image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16],
                       fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5], head_in_index=-1)
    DPTForDepthEstimation(config).save_pretrained(path)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(path)
    return path


# --- text and audio ---------------------------------------------------------------------------------
def t5(path: Path) -> Path:
    """A T5 seq2seq model (summarisation, translation, text2text)."""
    from transformers import T5Config, T5ForConditionalGeneration

    tok = word_tokenizer(32)
    config = T5Config(vocab_size=_vocab_size(), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                      decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id)
    model = T5ForConditionalGeneration(config)
    model.generation_config.min_new_tokens = 2
    model.generation_config.suppress_tokens = [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
                                               tok.bos_token_id]
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def bert(path: Path, head: str) -> Path:
    """A BERT with a head: 'qa' (extractive QA), 'classes' (text classification), 'tokens' (NER), 'base'."""
    import transformers

    labels = {"classes": {0: "NEGATIVE", 1: "POSITIVE"}, "tokens": {0: "O", 1: "B-PER", 2: "B-LOC"}}.get(head, {})
    config = transformers.BertConfig(vocab_size=_vocab_size(), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                                     **({"id2label": labels, "label2id": {v: k for k, v in labels.items()}}
                                        if labels else {}))
    cls = {"qa": "BertForQuestionAnswering", "classes": "BertForSequenceClassification",
           "tokens": "BertForTokenClassification", "base": "BertModel"}[head]
    getattr(transformers, cls)(config).save_pretrained(path)
    word_tokenizer(64, bert=True).save_pretrained(path)
    return path


def gpt2(path: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = word_tokenizer(64)
    GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=_vocab_size(), n_positions=64,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.pad_token_id)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def wav2vec2(path: Path) -> Path:
    """A wav2vec2 CTC speech recogniser over letters (like facebook/wav2vec2-base-960h)."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    letters = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAOINSHRDLU"]
    (path / "vocab").mkdir(parents=True, exist_ok=True)
    write_json(path / "vocab" / "vocab.json", {c: i for i, c in enumerate(letters)})
    tok = Wav2Vec2CTCTokenizer(str(path / "vocab" / "vocab.json"), word_delimiter_token="|")
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=False)
    config = Wav2Vec2Config(vocab_size=len(letters), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
                            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, pad_token_id=0,
                            do_stable_layer_norm=False, feat_extract_norm="group")
    Wav2Vec2ForCTC(config).save_pretrained(path)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tok).save_pretrained(path)
    return path


# --- diffusers ------------------------------------------------------------------------------------
def _clip_text_encoder() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, vocab_size=_vocab_size(), max_position_embeddings=16,
                                        bos_token_id=4, eos_token_id=5, pad_token_id=0, projection_dim=32))


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                         norm_num_groups=4, sample_size=32)


UNET_2D = {"block_out_channels": (8, 16), "layers_per_block": 1, "in_channels": 4,
           "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"), "cross_attention_dim": 32,
           "norm_num_groups": 4, "attention_head_dim": 2}


def stable_diffusion(path: Path) -> Path:
    """A Stable Diffusion 1.x layout (UNet, VAE, CLIP text encoder, tokenizer, scheduler), as a model folder."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), sample_size=16,
                                **UNET_2D)
    pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=_clip_text_encoder(), tokenizer=word_tokenizer(16),
                                   unet=unet, scheduler=DDIMScheduler(steps_offset=1, clip_sample=False), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


def controlnet(path: Path) -> Path:
    """A ControlNet matching stable_diffusion()'s UNet (like lllyasviel/sd-controlnet-canny)."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    ControlNetModel(conditioning_embedding_out_channels=(8, 16), **UNET_2D).save_pretrained(path)
    return path


def text_to_video(path: Path) -> Path:
    """A ModelScope text-to-video layout (UNet3D, like damo-vilab/text-to-video-ms-1.7b)."""
    import torch
    from diffusers import DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    torch.manual_seed(0)
    unet = UNet3DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=4)
    pipe = TextToVideoSDPipeline(vae=_vae(), text_encoder=_clip_text_encoder(), tokenizer=word_tokenizer(16),
                                 unet=unet, scheduler=DDIMScheduler(steps_offset=1, clip_sample=False))
    pipe.save_pretrained(path)
    return path


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data))
