"""The vision stage's labels: what each grid cell holds, from the scene graph."""

from __future__ import annotations

from training.cells import CELL_HEADS, covered_cells, scene_labels
from training.data.scene import Scene, Shape
from training.data.vocabulary import SHAPES


def _cells(scene: Scene) -> list[list[int]]:
    labels = scene_labels(scene)
    n = len(CELL_HEADS)
    return [labels[i * n:(i + 1) * n] for i in range(scene.grid * scene.grid)]


def test_a_large_free_shape_labels_every_cell_it_covers():
    star = Shape("star", "red", "large", row=1, col=1, x=0.5, y=0.5, r=0.42)
    scene = Scene("shapes", "white", "plain", shapes=(star,), layout="single")
    cells = _cells(scene)
    shape_id = SHAPES.index("star")
    covered = [i for i, c in enumerate(cells) if c[0] == 1]
    assert set(covered) == {1, 3, 4, 5, 7}  # the centre and its four neighbours, not the corners
    assert all(cells[i][2] == shape_id for i in covered)


def test_where_bodies_overlap_a_cell_goes_to_the_nearer_shape_and_a_centre_cell_to_its_own():
    a = Shape("circle", "blue", "large", row=0, col=0, x=0.3, y=0.3, r=0.35)
    b = Shape("square", "green", "large", row=1, col=1, x=0.62, y=0.62, r=0.35)
    owner = covered_cells(Scene("shapes", "white", "plain", shapes=(a, b), layout="few"))
    assert owner[0] is a and owner[1] is a and owner[4] is b  # cell 4: b's centre is nearer
    small = Shape("heart", "red", "small", row=1, col=1, x=0.45, y=0.5, r=0.1)
    big = Shape("star", "black", "large", row=1, col=2, x=0.68, y=0.5, r=0.4)
    scene = Scene("shapes", "white", "plain", shapes=(small, big), layout="few")
    assert covered_cells(scene)[4] is big  # nearer relative to its radius ...
    assert _cells(scene)[4][2] == SHAPES.index("heart")  # ... but cell 4 holds the heart's centre


def test_grid_shapes_label_only_their_own_cell():
    s = Shape("heart", "purple", "large", row=2, col=0)
    cells = _cells(Scene("shapes", "white", "plain", shapes=(s,)))
    assert [i for i, c in enumerate(cells) if c[0] == 1] == [6]
