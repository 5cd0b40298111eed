"""The episode loop, Trajectory records and the trajectory store."""

from envfarm.rollout.episode import run_episode
from envfarm.rollout.store import TrajectoryStore, data_files, read_manifest, read_run
from envfarm.rollout.trajectory import Timings, ToolCallRecord, Trajectory, Turn

__all__ = ["Timings", "ToolCallRecord", "Trajectory", "TrajectoryStore", "Turn", "data_files",
           "read_manifest", "read_run", "run_episode"]
