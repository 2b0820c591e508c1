import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { LABEL_IMAGE_ARCH, LABEL_IMAGE_BUILD_ID, LABEL_IMAGE_CHANGE, LABEL_IMAGE_PROJECT } from '@a4c/common';
import { dockerOptions, splitRef } from '../runtime/docker.js';

export interface BuildSpec {
  buildId: string;
  project: string;
  arch: string;
  changeNumber: string;
  imageTag: string;
  baseImage: string;
  /** Shell command of the source-sync step; sees A4C_PROJECT, A4C_CHANGE_NUMBER, A4C_ARCH. */
  syncCommand: string;
  /** host:port of an image registry to push to; undefined: the image stays on this host. */
  registry: string | undefined;
}

/**
 * Our Dockerfile template: the arch's base image, the source-sync step, and labels that
 * tell which project, arch and change the image holds (placement reads them). The
 * project, arch and change number were validated by the control plane (letters,
 * digits, . _ -), so they are safe in the file; the sync command is the operator's.
 */
export function dockerfile(s: BuildSpec): string {
  return [
    `FROM ${s.baseImage}`,
    `LABEL ${LABEL_IMAGE_PROJECT}="${s.project}" ${LABEL_IMAGE_ARCH}="${s.arch}" ${LABEL_IMAGE_CHANGE}="${s.changeNumber}" ${LABEL_IMAGE_BUILD_ID}="${s.buildId}"`,
    `ENV A4C_PROJECT="${s.project}" A4C_CHANGE_NUMBER="${s.changeNumber}" A4C_ARCH="${s.arch}"`,
    `RUN ${s.syncCommand}`,
    '',
  ].join('\n');
}

export interface BuildOutcome {
  imageId: string;
  /** Where it was pushed, with a registry configured. */
  pushedRef: string;
}

/** Tags the built image into the registry and pushes it; returns the registry reference. */
async function push(docker: Docker, registry: string, imageTag: string, onLine: (line: string) => void): Promise<string> {
  const ref = `${registry.replace(/\/+$/, '')}/${imageTag}`;
  const [repo, tag] = splitRef(ref);
  await docker.getImage(imageTag).tag({ repo, tag });
  // The engine wants an X-Registry-Auth header even for a registry without auth.
  const stream = await docker.getImage(ref).push({ authconfig: { serveraddress: registry } });
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(
      stream,
      (err: Error | null) => (err ? reject(err) : resolve()),
      (e: { status?: string; error?: string; errorDetail?: { message?: string } }) => {
        if (e.error) reject(new Error(`push to ${registry} failed: ${e.errorDetail?.message ?? e.error}`));
        else if (e.status && !/^(Preparing|Waiting|Pushing)/.test(e.status)) onLine(`push: ${e.status}`);
      },
    ),
  );
  return ref;
}

/** Runs one build on the engine, streaming its output lines; rejects with the engine's error. */
export async function dockerBuild(
  dockerHost: string | undefined,
  spec: BuildSpec,
  onLine: (line: string, percent: number | undefined) => void,
  signal: AbortSignal,
): Promise<BuildOutcome> {
  const docker = new Docker(dockerOptions(dockerHost));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'a4c-build-'));
  try {
    await writeFile(path.join(dir, 'Dockerfile'), dockerfile(spec));
    const stream = (await docker.buildImage({ context: dir, src: ['Dockerfile'] }, { t: spec.imageTag, forcerm: true, rm: true })) as NodeJS.ReadableStream & {
      destroy(err?: Error): void;
    };
    const abort = () => stream.destroy(new Error('build cancelled'));
    signal.addEventListener('abort', abort, { once: true });
    let imageId = '';
    try {
      await new Promise<void>((resolve, reject) => {
        docker.modem.followProgress(
          stream,
          (err: Error | null) => (err ? reject(err) : resolve()),
          (e: { stream?: string; error?: string; errorDetail?: { message?: string }; aux?: { ID?: string } }) => {
            if (e.aux?.ID) imageId = e.aux.ID;
            if (e.stream) {
              for (const line of e.stream.split('\n')) {
                if (!line.trim()) continue;
                const m = /^Step (\d+)\/(\d+)/.exec(line);
                onLine(line, m ? Math.floor(((Number(m[1]) - 1) / Number(m[2])) * 100) : undefined);
              }
            }
            if (e.error) reject(new Error(e.errorDetail?.message ?? e.error));
          },
        );
      });
    } finally {
      signal.removeEventListener('abort', abort);
    }
    if (signal.aborted) throw new Error('build cancelled');
    if (!imageId) imageId = (await docker.getImage(spec.imageTag).inspect()).Id;
    const pushedRef = spec.registry ? await push(docker, spec.registry, spec.imageTag, (l) => onLine(l, undefined)) : '';
    return { imageId, pushedRef };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
