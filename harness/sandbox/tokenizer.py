"""A character-level tokenizer built in code, so the sandbox needs no downloaded vocabulary.

One character is one token: a tiny model learns digit-wise arithmetic far more easily than over BPE
pieces that glue digits together arbitrarily ("348" vs "3" "48"), and the vocabulary stays under 128.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # pad first so that id 0 is padding

# Everything the synthetic tasks write, plus the rest of printable ASCII so that a user's stray prompt
# degrades to a few <unk> rather than failing.
CHARACTERS = tuple(dict.fromkeys(string.digits + "+-*/=?()<>{}[]\\.,:;!'\"$%&^_|~#@`" + " \n"
                                 + string.ascii_letters))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The sandbox tokenizer: adds <s> in front of every encoded text, pads on the left for batched generation."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character, whitespace included, is its own piece; `[\s\S]` because `.` skips newlines.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    # Fuse joins the pieces back without the spaces WordLevel would otherwise insert between them.
    backend.decoder = decoders.Fuse()
    # The prompt is encoded with <s> in front, exactly as in the warm start, so an evaluation that just
    # calls tokenizer(prompt) sees what the model was trained on.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
