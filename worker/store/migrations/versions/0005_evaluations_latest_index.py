"""the latest-state index of evaluations ends with id: one index entry per patient, ties included

Each batch reads every patient's latest evaluation: greatest effective_at, ties broken by id
(repo.latest_states). With an index on (patient_id, effective_at) only, PostgreSQL read every
evaluation of the patient that shares the greatest effective_at and sorted them (an incremental
sort). Ties are ordinary: each check-in recorded in the future is evaluated at its batch's time,
so a producer with a fast clock gives one effective_at to many evaluations. (patient_id,
effective_at, id) answers with the first index entry. It replaces the old index: every query that
used it (a patient's evaluations in time order) can use this one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.create_index('ix_evaluations_patient_latest', ['patient_id', 'effective_at', 'id'], unique=False)
        batch_op.drop_index('ix_evaluations_patient_effective')


def downgrade() -> None:
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.create_index('ix_evaluations_patient_effective', ['patient_id', 'effective_at'], unique=False)
        batch_op.drop_index('ix_evaluations_patient_latest')
