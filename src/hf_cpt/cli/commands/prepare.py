"""`hf-cpt prepare`: tokenise and pack a corpus once, before training (sharded across processes, resumable).

Without `--output`, the prepared folder goes where `load_corpus` looks for it (`<hf-cpt cache>/prepared/<key>`),
so a training run with the same dataset, sources, model and settings maps it instead of tokenising. Launched
with `torchrun --nproc_per_node N` (or on several nodes, with an output folder they share), the processes split
the shards between them.
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("prepare", help="Tokenise and pack a corpus once (sharded, resumable).")
    parser.add_argument("dataset_path", nargs="?", help="Hub dataset id or folder (data/<source>/); default: bundled.")
    parser.add_argument("--sources", nargs="+", required=True, help="Sources to prepare, e.g. web-en book-en.")
    parser.add_argument("--model", help="Model (folder or Hub id) whose tokenizer to use; default: embedded.")
    parser.add_argument("--max-length", type=int, required=True, help="Tokens per packed block (paper: 8192).")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--topic-column", default="topic")
    parser.add_argument("--topic-sources", nargs="*", help="Sources packed per topic (default: web-cn web-en).")
    parser.add_argument("--min-doc-tokens", type=int, default=20, help="Drop shorter documents (released code: 20).")
    parser.add_argument("--num-proc", type=int, help="Tokenising processes per rank (default: this one alone).")
    parser.add_argument("--shard-size", type=int, help="Documents per shard, the unit of resumption (default: 2048).")
    parser.add_argument(
        "--validation-documents",
        type=int,
        help="Per source without a validation split (per topic of a topic source), hold out this many documents "
        "as validation, as the recipe's validation_documents does (the 8B config: 1000); default: none.",
    )
    parser.add_argument("--validation-seed", type=int, default=0, help="Draws the held-out documents (recipe: seed).")
    parser.add_argument("--output", help="Prepared folder; default: the cache folder load_corpus reads.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Write the prepared folder and print where it is."""
    import torch.distributed as dist
    from transformers import AutoTokenizer

    from hf_cpt.data import DEMO_CORPUS_PATH
    from hf_cpt.data.mixtures import TOPIC_SOURCES
    from hf_cpt.data.prepare import DEFAULT_SHARD_SIZE, load_prepared, prepare_corpus
    from hf_cpt.modeling import embedded_model_path
    from hf_cpt.utils.distributed import launched_world_size, rank_and_world

    if launched_world_size() > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")  # tokenising needs no accelerator, only the ranks' agreement
    tokenizer = AutoTokenizer.from_pretrained(args.model or str(embedded_model_path()))
    folder = prepare_corpus(
        args.dataset_path or str(DEMO_CORPUS_PATH), args.sources, tokenizer, args.max_length, args.text_column,
        args.topic_column, TOPIC_SOURCES if args.topic_sources is None else args.topic_sources, args.min_doc_tokens,
        args.num_proc, output_dir=args.output, shard_size=args.shard_size or DEFAULT_SHARD_SIZE,
        split_across_ranks=True, validation_documents=args.validation_documents,
        validation_seed=args.validation_seed,
    )  # fmt: skip
    if rank_and_world()[0] == 0:
        train, validation, manifest = load_prepared(folder)
        print(
            f"Prepared {len(train):,} blocks of {args.max_length} tokens ({manifest['dtype']}) in "
            f"{len(manifest['train_blocks'])} groups, {0 if validation is None else len(validation):,} validation "
            f"documents: {folder}"
        )
    if dist.is_initialized():
        dist.destroy_process_group()
