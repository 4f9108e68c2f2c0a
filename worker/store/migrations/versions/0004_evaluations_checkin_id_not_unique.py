"""drop the redundant unique constraint on evaluations.checkin_id

One evaluation per check-in is already enforced by uq_evaluations_checkin_row_id (with the foreign
key to checkins.id, whose checkin_id is unique); evaluations.checkin_id is a copy of the check-in's
id, looked up by nothing. Its index cost PostgreSQL about a fifth of the time of every batch's
COPY into evaluations (README.md, Known gaps).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.drop_constraint('uq_evaluations_checkin_id', type_='unique')


def downgrade() -> None:
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_evaluations_checkin_id', ['checkin_id'])
