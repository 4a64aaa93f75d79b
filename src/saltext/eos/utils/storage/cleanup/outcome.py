"""What a run reports: progress towards the target and each step's outcome."""

from dataclasses import dataclass
from dataclasses import field

from .world import Usage


@dataclass
class Progress:
    """How full the filesystem is while the run goes on, and whether it is under the target."""

    usage: Usage
    used_bytes: int
    target_percent: float | None

    def reached(self, pending_freed=0):
        if self.target_percent is None:
            return False
        return self.usage.percent(self.used_bytes - pending_freed) < self.target_percent

    @property
    def percent(self):
        return round(self.usage.percent(self.used_bytes), 2)


@dataclass
class StepOutcome:
    name: str
    level: str
    category: str | None
    files: list = field(default_factory=list)
    freed_bytes: int = 0
    skipped: bool = False
    skip_reason: str | None = None
    stopped_at_target: bool = False
    errors: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def freed(self, path, size):
        self.files.append((path, size))
        self.freed_bytes += size

    def keep(self, path, reason):
        self.kept.append((path, reason))

    def error(self, message):
        self.errors.append(message)

    def skip(self, reason):
        self.skipped = True
        self.skip_reason = reason

    def as_dict(self, max_listed):
        # The largest files first: those are the ones a reader wants to see.
        files = sorted(self.files, key=lambda item: (-item[1], item[0]))
        files_not_listed = max(0, len(files) - max_listed)
        kept_not_listed = max(0, len(self.kept) - max_listed)
        return {
            "name": self.name,
            "level": self.level,
            "category": self.category,
            "files": [{"path": path, "bytes": size} for path, size in files[:max_listed]],
            "files_not_listed": files_not_listed,
            "freed_bytes": self.freed_bytes,
            "skipped": self.skipped,
            "skip_reason": self.skip_reason,
            "stopped_at_target": self.stopped_at_target,
            "errors": list(self.errors),
            "kept": [{"path": path, "reason": why} for path, why in self.kept[:max_listed]],
            "kept_not_listed": kept_not_listed,
            **self.extra,
        }
