import type { ComponentChildren } from 'preact';
import { useSession } from './lib/hooks.js';
import { Empty, PageHeader } from './components.js';

export function AdminOnly({ title, children }: { title: string; children: ComponentChildren }) {
  const { me } = useSession();
  if (me.role === 'admin') return <>{children}</>;
  return (
    <>
      <PageHeader title={title} />
      <Empty title="For admins only">
        <p>Signed in as {me.id} ({me.role}). Ask an admin if you need this.</p>
      </Empty>
    </>
  );
}
