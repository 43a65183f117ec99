"""Privileged scene geometry for the scripted expert: collision boxes, extents and a grasp search.

Everything is read from the MuJoCo model/data of a running LIBERO env. Collision geoms are the ones with a
non-zero ``contype`` or ``conaffinity`` (visual meshes have both 0); each is treated as its oriented bounding
box (``geom_aabb`` in the geom frame). Facts used here are in ``shared/reference/libero-expert-notes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRIPPER_OPENING = 0.075  # usable finger gap (m); the fully open gap is ~8 cm
HAND_HALF_LENGTH = 0.105  # the hand is ~21 cm along the closing axis
HAND_HALF_WIDTH = 0.035
HAND_UNDERSIDE = 0.026  # hand underside above the grip site
FINGER_DEPTH = 0.02  # finger pads reach this far below the grip site


@dataclass(frozen=True)
class Box:
    """An oriented box: world centre, rotation (columns = box axes) and half sizes."""

    center: np.ndarray
    rot: np.ndarray
    half: np.ndarray

    def corners(self) -> np.ndarray:
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
        return self.center + (signs * self.half) @ self.rot.T

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        local = (points - self.center) @ self.rot
        return np.all(np.abs(local) <= self.half + margin, axis=-1)


def _collision_geoms(sim, body_root: int | None = None):
    """(geom id, root body id) of every non-plane collision geom, only those under ``body_root`` if given."""
    m = sim.model
    for g in range(m.ngeom):
        if (m.geom_contype[g] == 0 and m.geom_conaffinity[g] == 0) or m.geom_type[g] == 0:
            continue  # visual-only geoms; planes (the floor) are handled by the support height instead
        root = int(m.body_rootid[m.geom_bodyid[g]])
        if body_root is None or root == body_root:
            yield g, root


def _geom_box(sim, g: int) -> Box:
    rot = sim.data.geom_xmat[g].reshape(3, 3)
    return Box(sim.data.geom_xpos[g] + rot @ sim.model.geom_aabb[g][:3], rot, np.asarray(sim.model.geom_aabb[g][3:], dtype=float))


def collision_boxes(sim, body_root: int | None = None) -> list[tuple[int, Box]]:
    """(root body id, box) of every non-plane collision geom; only those under ``body_root`` if given."""
    return [(root, _geom_box(sim, g)) for g, root in _collision_geoms(sim, body_root)]


def body_boxes(sim, body: int) -> list[Box]:
    """Collision boxes of the geoms attached to ``body`` itself, not to the rest of its tree (a stove's knob)."""
    root = int(sim.model.body_rootid[body])
    return [_geom_box(sim, g) for g, _ in _collision_geoms(sim, root) if sim.model.geom_bodyid[g] == body]


def object_points(sim, body_id: int) -> np.ndarray:
    """World-space hull samples of an object: mesh vertices of its collision meshes, box corners otherwise.

    Mesh vertices matter for round objects: a bowl's bounding-box corners overstate its radius by up to √2.
    """
    m, d = sim.model, sim.data
    out = []
    for g, _ in _collision_geoms(sim, int(m.body_rootid[body_id])):
        if m.geom_type[g] == 7 and m.geom_dataid[g] >= 0:  # mesh: vertices are in the geom frame
            mesh = m.geom_dataid[g]
            verts = m.mesh_vert[m.mesh_vertadr[mesh]: m.mesh_vertadr[mesh] + m.mesh_vertnum[mesh]]
            out.append(d.geom_xpos[g] + verts @ d.geom_xmat[g].reshape(3, 3).T)
        else:
            out.append(_geom_box(sim, g).corners())
    return np.concatenate(out) if out else d.body_xpos[body_id][None]


def obstacle_boxes(sim, body_id: int) -> list[Box]:
    """Collision boxes of everything except the robot and the object ``body_id`` itself."""
    skip = robot_roots(sim) | {int(sim.model.body_rootid[body_id])}
    return [b for r, b in collision_boxes(sim) if r not in skip]


def robot_roots(sim) -> set[int]:
    m = sim.model
    return {int(m.body_rootid[b]) for b in range(m.nbody) if m.body_id2name(b).startswith(("robot0", "gripper0", "mount0"))}


def closing_axis(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw), np.sin(yaw), 0.0])


def hand_and_finger_points(center: np.ndarray, yaw: float, half_gap: float) -> np.ndarray:
    """Sample points (~1 cm) of the two fingers and the hand for a top-down grasp at ``center``."""
    x = closing_axis(yaw)
    y = np.array([-x[1], x[0], 0.0])
    pts = []
    for side in (-1, 1):  # fingers: just outside the object along the closing axis, down to the pads
        for off in np.arange(half_gap + 0.005, half_gap + 0.025, 0.01):
            for dy in (-0.01, 0.0, 0.01):
                for dz in np.arange(-FINGER_DEPTH, HAND_UNDERSIDE, 0.01):
                    pts.append(center + side * off * x + dy * y + np.array([0, 0, dz]))
    for along in np.arange(-HAND_HALF_LENGTH, HAND_HALF_LENGTH + 1e-6, 0.015):  # the hand body
        for across in (-HAND_HALF_WIDTH, 0.0, HAND_HALF_WIDTH):
            for dz in (HAND_UNDERSIDE + 0.005, HAND_UNDERSIDE + 0.04):
                pts.append(center + along * x + across * y + np.array([0, 0, dz]))
    return np.asarray(pts)


def collisions(points: np.ndarray, obstacles: list[Box], margin: float = 0.004) -> int:
    return int(sum(box.contains(points, margin).sum() for box in obstacles))


@dataclass(frozen=True)
class Grasp:
    position: np.ndarray  # grip-site target
    yaw: float  # closing axis heading (rad)
    width: float  # object width along the closing axis
    cost: int  # sample points inside neighbouring geometry, + 1 per cm of offset along the long axis
    rim: bool  # pinching a wide object's rim (bowls)


def plan_grasp(sim, body_id: int, surface_z: float) -> Grasp:
    """Pick the top-down grasp (yaw, offset) whose fingers and hand clear the neighbouring geometry.

    Narrow objects are grasped across their narrowest direction, sampled every 15° and offset along the
    long axis in 1 cm steps. Objects wider than the gripper (bowls) are pinched at the rim with the closing
    axis radial, grip site 6 mm inside the outer radius and 1.2 cm below the rim top.
    """
    root = int(sim.model.body_rootid[body_id])
    obstacles = obstacle_boxes(sim, body_id)
    pts = object_points(sim, body_id)
    xy_mid = (pts[:, :2].max(0) + pts[:, :2].min(0)) / 2
    top, bottom = pts[:, 2].max(), max(pts[:, 2].min(), surface_z)
    candidates: list[Grasp] = []
    for yaw in np.deg2rad(np.arange(0, 180, 15)):
        x = closing_axis(yaw)
        width = np.ptp(pts[:, :2] @ x[:2])
        along = np.array([-x[1], x[0]])
        if width <= GRIPPER_OPENING:
            z = max(top - 0.02, bottom + 0.012)
            length = np.ptp(pts[:, :2] @ along)
            for off in np.arange(-min(0.03, length / 4), min(0.03, length / 4) + 1e-6, 0.01):
                pos = np.array([*(xy_mid + off * along), z])
                hits = collisions(hand_and_finger_points(pos, yaw, width / 2), obstacles)
                candidates.append(Grasp(pos, yaw, width, hits + int(abs(off) * 100), False))
    if not candidates:  # wider than the gripper in every direction: pinch the rim radially
        center = sim.data.body_xpos[body_id][:2]
        walls = [b for _, b in collision_boxes(sim, root)]
        rel = np.array([b.center[:2] for b in walls]) - center
        for heading in np.deg2rad(np.arange(0, 360, 15)):
            u = closing_axis(heading)
            along, across = rel @ u[:2], rel @ np.array([-u[1], u[0]])
            radius = along.max()  # centre line of the outermost wall pieces ≈ rim − 6 mm
            local = [b for b, a, c in zip(walls, along, across, strict=True) if a > radius - 0.01 and abs(c) < 0.015]
            rim_top = max(b.corners()[:, 2].max() for b in local or walls)  # local: a bowl on a ramekin tilts
            pos = np.array([*(center + radius * u[:2]), rim_top - 0.012])
            hits = collisions(hand_and_finger_points(pos, heading, 0.006), obstacles)
            candidates.append(Grasp(pos, heading % np.pi, 0.012, hits, True))
    return min(candidates, key=lambda g: (g.cost, g.width))
