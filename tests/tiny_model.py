"""A tiny random chat model built offline, for tests that train, serve or generate locally.

``build_tiny_model(path)`` writes a complete transformers model folder: a byte-level BPE tokenizer
trained on generated sentences (any text encodes, nothing is unknown), a ChatML ``chat_template``,
a 2-layer Llama with random weights and a ``generation_config``. It loads with
``AutoModelForCausalLM`` / ``AutoTokenizer``, trains with TRL, and serves with ``transformers serve``.

Use the session fixture ``tiny_model`` (import it into a test module, or list this module in
``pytest_plugins``): it builds the model once per test process.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512

_SUBJECTS = ["the cat", "a dog", "my friend", "the model", "this answer", "the teacher", "a student", "we"]
_VERBS = ["is", "was", "likes", "sees", "finds", "writes", "solves", "gives"]
_OBJECTS = ["a good answer", "the problem", "some numbers", "a short story", "the result", "an idea"]
_EXTRA = [
    "yes", "no", "good", "bad", "correct", "wrong", "step", "first", "then", "finally", "answer",
    "question", "user", "assistant", "system", "what", "how", "why", "because", "so",
]  # fmt: skip


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
        words += rng.sample(_EXTRA, k=rng.randint(0, 3))
        sentence = " ".join(words)
        if rng.random() < 0.5:
            sentence += f" {rng.randint(0, 999)} + {rng.randint(0, 99)} = {rng.randint(0, 1100)}"
        out.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "?", "!"]))
    return out


def build_tiny_model(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random Llama chat model (tokenizer, chat template, generation config) to ``path``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_sentences(4000, seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|bos|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        model_max_length=1024,
        chat_template=CHATML_TEMPLATE,
    )
    tokenizer.save_pretrained(path)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=32,
    )
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny random chat model, built once per test process."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.tiny_model OUTDIR")
    print(build_tiny_model(sys.argv[1]))
