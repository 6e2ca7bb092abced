"""servers (heartbeat rows) and the processes each owns

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 11:30:00
"""

from alembic import op
import sqlalchemy as sa



revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('servers',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=1024), nullable=False),
    sa.Column('home', sa.Text(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('pid_start', sa.BigInteger(), nullable=True),
    sa.Column('boot_id', sa.String(length=64), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('servers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_servers_name'), ['name'], unique=False)

    op.create_table('server_processes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('server_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=512), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('pgid', sa.Integer(), nullable=False),
    sa.Column('start_time', sa.BigInteger(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['server_id'], ['servers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('server_processes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_server_processes_server_id'), ['server_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('server_processes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_server_processes_server_id'))
    op.drop_table('server_processes')
    with op.batch_alter_table('servers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_servers_name'))
    op.drop_table('servers')
