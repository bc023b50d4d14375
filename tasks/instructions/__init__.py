"""Verifiable instructions keyed by IFEval ids: kwargs, checkers, compatibility.

Shared by the prompts stage (which writes them into prompts, `tasks.prompts.instruction_forms`)
and the preferences and dialogues stages (which verify responses against them).
"""

from tasks.instructions.library import INSTRUCTIONS, Instruction
from tasks.instructions.registry import (
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
    "check_loose", "check_strict", "find_conflicts", "get_instruction", "loose_variants",
    "sample_instruction_ids", "verify",
]
