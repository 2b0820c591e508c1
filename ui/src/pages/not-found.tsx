import { useLocation } from 'preact-iso';
import { Empty, PageHeader } from '../components.js';

export function NotFoundPage() {
  const { path } = useLocation();
  return (
    <>
      <PageHeader title="Page not found" />
      <Empty title={`Nothing lives at ${path}`}>
        <p>
          Go to <a href="/ui/workspaces">your workspaces</a>.
        </p>
      </Empty>
    </>
  );
}
