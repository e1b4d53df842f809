"""A tiny llama-architecture GGUF, written deterministically (same bytes every time).

No model can be downloaded here, so the image ships one we make: llama architecture,
n_embd 64 x 2 layers, F32 (~0.9 MB), a real SentencePiece-style vocabulary (``<unk>``, ``<s>``,
``</s>``, ChatML's two markers, the 256 byte tokens ``<0xXX>``, then word pieces). Weights are
random from a fixed seed, so the text is nonsense, but llama.cpp loads, tokenizes and runs it
exactly like a real model, which is what boot and tokens/s tests need.

One trick keeps the console clean: every token embedding carries a constant in dimension 0,
which the final RMS norm turns into a large positive activation, and the output matrix gives
word pieces +1 and byte/control tokens -5 in that dimension. So sampling practically never
picks a raw byte (no control characters or broken UTF-8 on the serial console) nor ``</s>``
(generation runs for exactly the requested number of tokens).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

SEED = 20261121
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_FF = 192
N_CTX = 2048
NAME = "zosia-tiny"

# Word pieces (without the SentencePiece space marker); order = frequency rank = score.
_WORDS = """
the of and to a in is it you that he was for on are with as i his they be at one have this from
or had by hot word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her
long make thing see him two has look more day could go come did number sound no most people my
over know water than call first who may down side been now find any new work part take get
place made live where after back little only round man year came show every good me give our
under name very through just form sentence great think say help low line differ turn cause much
mean before move right boy old too same tell does set three want air well also play small end
put home read hand port large spell add even land here must big high such follow act why ask
men change went light kind off need house picture try us again animal point mother world near
build self earth father head stand own page should country found answer school grow study still
learn plant cover food sun four between state keep eye never last let thought city tree cross
farm hard start might story saw far sea draw left late run while press close night real life
few north open seem together next white children begin got walk example ease paper group always
music those both mark often letter until mile river car feet care second book carry took
science eat room friend began idea fish mountain stop once base hear horse cut sure watch color
face wood main enough plain girl usual young ready above ever red list though feel talk bird
soon body dog family direct pose leave song measure door product black short numeral class wind
question happen complete ship area half rock order fire south problem piece told knew pass
since top whole king space heard best hour better true during hundred five remember step early
hold west ground interest reach fast verb sing listen six table travel less morning ten simple
several vowel toward war lay against pattern slow center love person money serve appear road
map rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark
machine note wait plan figure star box noun field rest correct able pound done beauty drive
stood contain front teach week final gave green oh quick develop ocean warm free minute strong
special mind behind clear tail produce fact street inch multiply nothing course stay wheel full
force blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate miss brought
heat snow tire bring yes distant fill east paint language among kernel guest virtual machine
prompt token model
""".split()  # noqa: SIM905 (600 quoted words would be unreadable)
_SUFFIXES = ["s", "ed", "ing", "er", "ly", "est", "tion", "al", "en", "ness"]
_PUNCT = list(".,:;!?'\"-()[]{}<>|/\\_=+*&%$#@~`^")
# ChatML markers as control tokens, so llama.cpp's conversation mode (its default when a
# model has a chat template) spends two tokens on them rather than a dozen byte tokens.
_CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) of an SPM ("llama") vocabulary."""
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"]
    scores = [0.0, 0.0, 0.0]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    for t in _CHAT_TOKENS:
        tokens.append(t)
        scores.append(0.0)
        types.append(TokenType.CONTROL)
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(TokenType.BYTE)
    pieces: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        if p not in seen:
            seen.add(p)
            pieces.append(p)

    for w in _WORDS:
        add("\u2581" + w)  # U+2581 marks a preceding space, as in SentencePiece
    for s in _SUFFIXES:
        add(s)
    # Single characters make every ASCII word encodable without byte fallback.
    for c in "abcdefghijklmnopqrstuvwxyz":
        add("\u2581" + c)
        add(c)
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
        add(c)
    for c in _PUNCT:
        add(c)
    add("\u2581")
    for rank, p in enumerate(pieces):
        tokens.append(p)
        scores.append(-float(rank))  # SPM merges prefer higher scores: frequent first
        types.append(TokenType.NORMAL)
    return tokens, scores, [int(t) for t in types]


def write_model(path: Path, seed: int = SEED) -> str:
    """Write the model to ``path``; return its sha256. Same seed, same bytes."""
    import gguf

    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def normal(*shape: int, std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name(NAME)
    w.add_description("random-weight test model for zosia boot and tokens/s tests")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    emb = normal(n_vocab, N_EMBD, std=0.1)
    emb[:, 0] = 1.0  # the constant direction (see module docstring)
    w.add_tensor("token_embd.weight", emb)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, np.float32))
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + t + ".weight", normal(N_EMBD, N_EMBD, std=0.02))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, np.float32))
        # numpy shape is (rows=out, cols=in); gguf stores the reverse as ne[].
        w.add_tensor(p + "ffn_gate.weight", normal(N_FF, N_EMBD, std=0.02))
        w.add_tensor(p + "ffn_up.weight", normal(N_FF, N_EMBD, std=0.02))
        w.add_tensor(p + "ffn_down.weight", normal(N_EMBD, N_FF, std=0.02))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    out = normal(n_vocab, N_EMBD, std=1.0)
    word = np.array([t == 1 for t in types])  # TokenType.NORMAL
    out[word, 0] = 1.0
    out[~word, :] = 0.0
    out[~word, 0] = -5.0
    w.add_tensor("output.weight", out)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="write the zosia tiny GGUF")
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=SEED)
    a = ap.parse_args()
    print(write_model(a.out, a.seed), a.out)
