"""users, workspace members, console sessions, credential owners and last use, sealed secrets

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 11:40:00

Secrets already stored in plain text (AWS secret keys, Craft AI environment variable values, task arguments) are
sealed at the first start after this migration (`store/secrets.py seal_plain_rows`): the key lives outside the
database (a 0600 file in the home, or MODELPORT_SECRET_KEY), so a migration cannot know it.
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

WORKSPACE_BOUND = ('sagemaker_models', 'sagemaker_endpoint_configs', 'sagemaker_endpoints', 'dataiku_services',
                   'craft_pipelines', 'craft_deployments', 'craft_executions', 'craft_environment_variables')


def upgrade() -> None:
    op.create_table('users',
                    sa.Column('id', sa.String(length=36), nullable=False),
                    sa.Column('email', sa.String(length=255), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('email'))
    op.create_table('workspace_members',
                    sa.Column('workspace_id', sa.Integer(), nullable=False),
                    sa.Column('user_id', sa.String(length=36), nullable=False),
                    sa.Column('role', sa.String(length=16), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], ondelete='CASCADE'),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('workspace_id', 'user_id'))
    op.create_index('ix_workspace_members_user_id', 'workspace_members', ['user_id'])
    op.create_table('sessions',
                    sa.Column('id', sa.String(length=64), nullable=False),
                    sa.Column('token_id', sa.String(length=36), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_sessions_token_id', 'sessions', ['token_id'])
    for table in ('api_tokens', 'aws_access_keys'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('user_id', sa.String(length=36), nullable=True))
            batch.add_column(sa.Column('workspace_id', sa.Integer(), nullable=True))
            batch.add_column(sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))
            batch.create_index(f'ix_{table}_user_id', ['user_id'])
            if table == 'aws_access_keys':
                batch.alter_column('secret', existing_type=sa.String(length=64), type_=sa.Text())
    for table in WORKSPACE_BOUND:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('workspace_id', sa.Integer(), nullable=True))
            batch.create_index(f'ix_{table}_workspace_id', ['workspace_id'])
    with op.batch_alter_table('craft_deployments') as batch:
        batch.add_column(sa.Column('endpoint_token_created_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('endpoint_token_used_at', sa.DateTime(timezone=True), nullable=True))
    # every non-admin token belongs to a user: one user per existing user token, named after it
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, name, created_at FROM api_tokens WHERE kind = 'user'")).fetchall()
    taken: set[str] = set()
    for token_id, name, created_at in rows:
        email = name if name not in taken else f"{name}-{token_id[:8]}"
        taken.add(email)
        connection.execute(sa.text("INSERT INTO users (id, email, created_at) VALUES (:id, :email, :at)"),
                           {"id": token_id, "email": email, "at": created_at})
        connection.execute(sa.text("UPDATE api_tokens SET user_id = :id WHERE id = :id"), {"id": token_id})


def downgrade() -> None:
    with op.batch_alter_table('craft_deployments') as batch:
        batch.drop_column('endpoint_token_used_at')
        batch.drop_column('endpoint_token_created_at')
    for table in WORKSPACE_BOUND:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f'ix_{table}_workspace_id')
            batch.drop_column('workspace_id')
    for table in ('api_tokens', 'aws_access_keys'):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f'ix_{table}_user_id')
            batch.drop_column('last_used_at')
            batch.drop_column('workspace_id')
            batch.drop_column('user_id')
    op.drop_index('ix_sessions_token_id', table_name='sessions')
    op.drop_table('sessions')
    op.drop_index('ix_workspace_members_user_id', table_name='workspace_members')
    op.drop_table('workspace_members')
    op.drop_table('users')
