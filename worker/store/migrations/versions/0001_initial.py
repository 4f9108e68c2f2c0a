"""initial schema: patients, check-ins, evaluations, transitions, rejects, audit

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('checkins',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('checkin_id', sa.String(length=128), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stream_id', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkins')),
    sa.UniqueConstraint('checkin_id', name=op.f('uq_checkins_checkin_id'))
    )
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkins_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkins_stream_id'), ['stream_id'], unique=False)

    op.create_table('duplicate_checkins',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('stream_id', sa.String(length=64), nullable=False),
    sa.Column('checkin_id', sa.String(length=128), nullable=False),
    sa.Column('same_payload', sa.Boolean(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_duplicate_checkins')),
    sa.UniqueConstraint('stream_id', 'checkin_id', name='uq_duplicate_checkins_entry')
    )
    with op.batch_alter_table('duplicate_checkins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_duplicate_checkins_checkin_id'), ['checkin_id'], unique=False)

    op.create_table('patients',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('age_years', sa.Float(), nullable=True),
    sa.Column('therapy', sa.String(length=128), nullable=True),
    sa.Column('therapy_start', sa.Date(), nullable=True),
    sa.Column('unit', sa.String(length=64), nullable=True),
    sa.Column('checkin_interval_h', sa.Float(), nullable=True),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('patient_id', name=op.f('uq_patients_patient_id'))
    )
    op.create_table('rejected_inputs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('stream_id', sa.String(length=64), nullable=False),
    sa.Column('payload_sha256', sa.String(length=64), nullable=False),
    sa.Column('checkin_id', sa.String(length=128), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('raw_payload', sa.LargeBinary(), nullable=False),
    sa.Column('delivery_count', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rejected_inputs')),
    sa.UniqueConstraint('stream_id', 'payload_sha256', name='uq_rejected_inputs_entry')
    )
    with op.batch_alter_table('rejected_inputs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rejected_inputs_checkin_id'), ['checkin_id'], unique=False)

    op.create_table('evaluations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('checkin_row_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('checkin_id', sa.String(length=128), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('effective_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('evaluated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('crs_grade', sa.Integer(), nullable=False),
    sa.Column('crs_grade_is_minimum', sa.Boolean(), nullable=False),
    sa.Column('icans_grade', sa.Integer(), nullable=True),
    sa.Column('icans_floor', sa.Integer(), nullable=False),
    sa.Column('red_flags', sa.JSON(), nullable=False),
    sa.Column('news2', sa.Integer(), nullable=True),
    sa.Column('urgency', sa.String(length=16), nullable=False),
    sa.Column('out_of_order', sa.Boolean(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['checkin_row_id'], ['checkins.id'], name=op.f('fk_evaluations_checkin_row_id_checkins')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evaluations')),
    sa.UniqueConstraint('checkin_id', name=op.f('uq_evaluations_checkin_id')),
    sa.UniqueConstraint('checkin_row_id', name=op.f('uq_evaluations_checkin_row_id'))
    )
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.create_index('ix_evaluations_patient_effective', ['patient_id', 'effective_at'], unique=False)

    op.create_table('transitions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('evaluation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('previous_evaluation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('checkin_id', sa.String(length=128), nullable=False),
    sa.Column('kinds', sa.JSON(), nullable=False),
    sa.Column('urgency', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['evaluation_id'], ['evaluations.id'], name=op.f('fk_transitions_evaluation_id_evaluations')),
    sa.ForeignKeyConstraint(['previous_evaluation_id'], ['evaluations.id'], name=op.f('fk_transitions_previous_evaluation_id_evaluations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transitions')),
    sa.UniqueConstraint('evaluation_id', name=op.f('uq_transitions_evaluation_id'))
    )
    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transitions_patient_id'), ['patient_id'], unique=False)




def downgrade() -> None:
    
    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transitions_patient_id'))

    op.drop_table('transitions')
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.drop_index('ix_evaluations_patient_effective')

    op.drop_table('evaluations')
    with op.batch_alter_table('rejected_inputs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rejected_inputs_checkin_id'))

    op.drop_table('rejected_inputs')
    op.drop_table('patients')
    with op.batch_alter_table('duplicate_checkins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_duplicate_checkins_checkin_id'))

    op.drop_table('duplicate_checkins')
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkins_stream_id'))
        batch_op.drop_index(batch_op.f('ix_checkins_patient_id'))

    op.drop_table('checkins')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')

