"""Verifiable instructions keyed by IFEval ids: kwargs, sentences, checkers, prompt forms."""

from tasks.prompts.instructions.forms import (
    describe_instruction,
    render_form,
    render_multi_turn,
    render_second_turn,
    render_single_turn,
    template_lineage,
)
from tasks.prompts.instructions.library import INSTRUCTIONS, Instruction
from tasks.prompts.instructions.registry import (
    CONFLICTS,
    UnknownInstructionError,
    check_compatible,
    check_loose,
    check_strict,
    find_conflicts,
    get_instruction,
    loose_variants,
    sample_instruction_ids,
    verify,
)

__all__ = [
    "CONFLICTS", "INSTRUCTIONS", "Instruction", "UnknownInstructionError", "check_compatible",
    "check_loose", "check_strict", "describe_instruction", "find_conflicts", "get_instruction",
    "loose_variants", "render_form", "render_multi_turn", "render_second_turn",
    "render_single_turn", "sample_instruction_ids", "template_lineage", "verify",
]
