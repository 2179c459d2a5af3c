import { describe, expect, it } from 'vitest';
import { fileUrlPath, parseByteRange, parseFileUrlPath, parseFilePath, parseZipDownloadPath, servedTypeFor, zipDownloadPath, type NamespaceId } from '../../src/protocol/index.ts';
import { parseFileReadReply, parseFileReadRequest } from '../../workers/file-read-messages.ts';

const NS = 'AbCdEfGhIjKlMnOpQrStUv' as NamespaceId;

describe('file URLs', () => {
  it('encodes each segment on its own and reads back the same path', () => {
    const path = parseFilePath('docs/a b/ü #1?.txt');
    const url = fileUrlPath(NS, path);
    expect(url).toBe(`/w/${NS}/file/docs/a%20b/%C3%BC%20%231%3F.txt`);
    expect(parseFileUrlPath(url)).toEqual({ ns: NS, path });
  });

  it('refuses encoded separators, dot segments, NUL, bad encodings and bad namespaces', () => {
    for (const bad of [
      `/w/${NS}/file/a%2Fb`,
      `/w/${NS}/file/a%5Cb`,
      `/w/${NS}/file/a/%2E%2E/b`,
      `/w/${NS}/file/..`,
      `/w/${NS}/file/a//b`,
      `/w/${NS}/file/a%00b`,
      `/w/${NS}/file/%E0%A4%A`,
      `/w/short/file/a`,
      `/w/${NS}/files/a`,
      `/w/${NS}/file/`,
    ]) {
      expect(() => parseFileUrlPath(bad), bad).toThrow();
    }
  });
});

describe('zip download URLs', () => {
  const JOB = '0b6c1f0e-4f4e-4d7a-9a57-3c2d1e0f9a8b';

  it('reads back the namespace, job and name it was made from', () => {
    const url = zipDownloadPath(NS, JOB, 'Fotos 2024 #1.zip');
    expect(url).toBe(`/w/${NS}/zip/${JOB}/Fotos%202024%20%231.zip`);
    expect(parseZipDownloadPath(url)).toEqual({ ns: NS, jobId: JOB, name: 'Fotos 2024 #1.zip' });
  });

  it('refuses job ids that are not UUIDs, names with separators or control characters, and extra segments', () => {
    for (const bad of [
      `/w/${NS}/zip/not-a-job/a.zip`,
      `/w/${NS}/zip/${JOB.toUpperCase()}/a.zip`,
      `/w/${NS}/zip/${JOB}/a%2Fb.zip`,
      `/w/${NS}/zip/${JOB}/a%5Cb.zip`,
      `/w/${NS}/zip/${JOB}/a%0Ab.zip`,
      `/w/${NS}/zip/${JOB}/%E0%A4%A.zip`,
      `/w/${NS}/zip/${JOB}/a/b.zip`,
      `/w/${NS}/zip/${JOB}/`,
      `/w/bad!ns/zip/${JOB}/a.zip`,
    ]) {
      expect(() => parseZipDownloadPath(bad), bad).toThrow();
    }
  });
});

describe('Range headers', () => {
  const size = 1000;
  it('reads one range of each form, clamped to the file', () => {
    expect(parseByteRange(null, size)).toBeNull();
    expect(parseByteRange('bytes=0-99', size)).toEqual({ start: 0, end: 99 });
    expect(parseByteRange('bytes=900-', size)).toEqual({ start: 900, end: 999 });
    expect(parseByteRange('bytes=900-5000', size)).toEqual({ start: 900, end: 999 });
    expect(parseByteRange('bytes=-100', size)).toEqual({ start: 900, end: 999 });
    expect(parseByteRange('bytes=-5000', size)).toEqual({ start: 0, end: 999 });
  });
  it('answers unsatisfiable ranges with 416 and serves the whole file for what it does not understand', () => {
    expect(parseByteRange('bytes=1000-', size)).toBe('unsatisfiable');
    expect(parseByteRange('bytes=2000-3000', size)).toBe('unsatisfiable');
    expect(parseByteRange('bytes=-0', size)).toBe('unsatisfiable');
    expect(parseByteRange('bytes=0-', 0)).toBe('unsatisfiable');
    expect(parseByteRange('bytes=5-1', size)).toBeNull();
    expect(parseByteRange('bytes=0-1,5-6', size)).toBeNull();
    expect(parseByteRange('items=0-1', size)).toBeNull();
    expect(parseByteRange('bytes=99999999999999999999-', size)).toBeNull();
  });
});

describe('served types', () => {
  it('shows media inline, scriptable types as text, and downloads the rest', () => {
    expect(servedTypeFor('v/clip.webm')).toEqual({ contentType: 'video/webm', disposition: 'inline' });
    expect(servedTypeFor('doc.PDF')).toEqual({ contentType: 'application/pdf', disposition: 'inline' });
    for (const name of ['a.html', 'b.HTM', 'c.svg', 'd.xml', 'e.js', 'f.xhtml']) {
      expect(servedTypeFor(name), name).toEqual({ contentType: 'text/plain;charset=utf-8', disposition: 'inline' });
    }
    expect(servedTypeFor('archive.zip')).toEqual({ contentType: 'application/octet-stream', disposition: 'attachment' });
    expect(servedTypeFor('.html')).toEqual({ contentType: 'application/octet-stream', disposition: 'attachment' });
  });
});

describe('file read messages', () => {
  it('accepts well-formed messages and drops everything else', () => {
    expect(parseFileReadRequest({ type: 'open', ns: NS, path: 'a', range: null })).toEqual({ type: 'open', ns: NS, path: 'a', range: null });
    expect(parseFileReadRequest({ type: 'open', ns: NS, path: 'a', range: 5 })).toBeNull();
    expect(parseFileReadRequest({ type: 'open', ns: NS, path: 'a', range: 'x'.repeat(201) })).toBeNull();
    expect(parseFileReadRequest('pull')).toBeNull();
    expect(parseFileReadReply({ type: 'head', status: 206, size: 10, start: 2, end: 5 })).toEqual({ type: 'head', status: 206, size: 10, start: 2, end: 5, synced: false });
    expect(parseFileReadReply({ type: 'head', status: 206, size: 10, start: 2, end: 10 })).toBeNull();
    expect(parseFileReadReply({ type: 'head', status: 500, size: 10, start: 2, end: 5 })).toBeNull();
    expect(parseFileReadReply({ type: 'refused', status: 302, message: 'x' })).toBeNull();
    expect(parseFileReadReply({ type: 'piece', blob: 'bytes' })).toBeNull();
    expect(parseFileReadReply({ type: 'piece', blob: new Blob(['ab']) })?.type).toBe('piece');
  });
});
