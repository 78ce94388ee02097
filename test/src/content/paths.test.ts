import { describe, expect, it } from 'vitest';
import {
  checkPathList,
  nameProblem,
  pathListProblems,
  pathProblem,
  validatePackageName,
  validateRelativePath,
  validateVersion,
} from '../../../src/content/paths.js';
import { printable } from '../../../src/content/printable.js';
import { errorOf } from './helpers.js';

describe('relative paths', () => {
  it('accepts ordinary relative paths', () => {
    for (const p of [
      'setup.exe',
      'bin/tool',
      'a/b/c/d.txt',
      '.config/x',
      'résumé.pdf',
      '日本/語.txt',
      'a..b',
      '...x',
      'x-1_2+3',
      'con-fig.txt',
    ]) {
      expect(pathProblem(p), p).toBeUndefined();
      expect(validateRelativePath(p)).toBe(p);
    }
  });

  it('refuses each traversal and ambiguity, naming the field, the value and the rule', () => {
    const cases: Array<[string, string]> = [
      ['../../etc/passwd', '".." segment not allowed'],
      ['a/../../b', '".." segment not allowed'],
      ['..', '".." segment not allowed'],
      ['/etc/passwd', 'absolute path not allowed'],
      ['a\\..\\b', 'backslash not allowed'],
      ['C:\\Windows', 'backslash not allowed'],
      ['C:evil.dll', 'drive letter not allowed'],
      ['file.txt:stream', 'character ":" not allowed'],
      ['a/./b', '"." segment not allowed'],
      ['a//b', 'empty segment not allowed'],
      ['a/', 'empty segment not allowed'],
      ['', 'empty path'],
      ['a\u0000b', 'NUL character not allowed'],
      ['a\nb', 'control character not allowed'],
      ['a\u001b[31mred', 'control character not allowed'],
      ['a\u0085b', 'control character not allowed'],
      ['dir/CON', 'Windows device name'],
      ['nul.txt', 'Windows device name'],
      ['LPT1.log/x', 'Windows device name'],
      ['.. ', 'ends with a dot or a space'],
      ['dir./x', 'ends with a dot or a space'],
      ['x ', 'ends with a dot or a space'],
      ['a<b', 'character "<" not allowed'],
      ['what?', 'character "?" not allowed'],
      ['a'.repeat(256), 'segment longer than 255 bytes'],
      ['é'.repeat(128), 'segment longer than 255 bytes'],
      [Array(300).fill('abcd').join('/'), 'longer than 1024 bytes'],
    ];
    for (const [p, reason] of cases) {
      expect(pathProblem(p), JSON.stringify(p)).toContain(reason);
      const e = errorOf(() => validateRelativePath(p, 'files[2].path'));
      expect(e.code).toBe('bad-path');
      expect(e.message).toContain(`files[2].path ${printable(p)}: `);
      expect(e.message).toContain(reason);
    }
    expect(pathProblem(42)).toBe('expected a string, got 42');
    expect(pathProblem(null)).toBe('expected a string, got null');
  });

  it('escapes the offending value for printing', () => {
    const e = errorOf(() => validateRelativePath('evil\u202Etxt.exe/../x\u001b[2J', 'path'));
    expect(e.message).toContain('evil\\u202etxt.exe/../x\\u001b[2J');
    expect(e.message).not.toMatch(/[\u202e\u001b]/);
    expect(printable('x'.repeat(500))).toMatch(/… \(500 characters\)$/);
  });
});

describe('path lists', () => {
  it('refuses two paths that are one file ignoring case or Unicode normalisation', () => {
    expect(pathListProblems(['README.txt', 'docs/a', 'readme.TXT'])).toEqual([
      [2, '"readme.TXT" is the same file as "README.txt" ignoring case'],
    ]);
    const nfc = 'caf\u00e9';
    const nfd = 'cafe\u0301';
    expect(pathListProblems([nfc, nfd])).toHaveLength(1);
    expect(pathListProblems(['Dir/a', 'dir/A'])).toHaveLength(1);
    const e = errorOf(() => checkPathList(['Setup.exe', 'setup.EXE'], 'files'));
    expect(e.code).toBe('bad-path');
    expect(e.message).toBe('files[1]: "setup.EXE" is the same file as "Setup.exe" ignoring case');
  });

  it('refuses a file that is also a folder of another path', () => {
    expect(pathListProblems(['a', 'a/b'])).toEqual([
      [1, '"a" is a file, so it cannot also be a folder of "a/b"'],
    ]);
    expect(pathListProblems(['x/y/z/w', 'X/Y'])).toEqual([
      [0, '"X/Y" is a file, so it cannot also be a folder of "x/y/z/w"'],
    ]);
    expect(pathListProblems(['a', 'ab/c', 'a.txt', 'b/a'])).toEqual([]);
  });

  it('checks every path on its own first and reports all of them', () => {
    const e = errorOf(() => checkPathList(['ok', '/abs', '../up'], 'files'));
    expect(e.message).toBe(
      'files[1] "/abs": absolute path not allowed; files[2] "../up": ".." segment not allowed',
    );
    expect(checkPathList(['a', 'b/c'])).toEqual(['a', 'b/c']);
  });
});

describe('package names and versions', () => {
  it('accepts a sane charset', () => {
    for (const v of ['firefox', '7zip', 'Firefox_ESR', '1.2.3-beta+build.5', 'a', '_x', 'x'.repeat(128)]) {
      expect(nameProblem(v), v).toBeUndefined();
    }
    expect(validatePackageName('firefox')).toBe('firefox');
    expect(validateVersion('128.0.1')).toBe('128.0.1');
  });

  it('refuses separators, traversal, control characters and leading dots or dashes', () => {
    const cases: Array<[unknown, string]> = [
      ['a/b', 'only letters, digits and . _ + - are allowed'],
      ['a\\b', 'only letters'],
      ['..', 'must not start with a dot'],
      ['a..b', '".." not allowed'],
      ['.hidden', 'must not start with a dot'],
      ['-rf', 'must not start with a dot or a dash'],
      ['+x', 'must not start with "+"'],
      ['a.', 'must not end with a dot'],
      ['a b', 'only letters'],
      ['a\u0000', 'only letters'],
      ['caf\u00e9', 'only letters'],
      ['con', 'Windows device name'],
      ['', 'empty'],
      ['x'.repeat(129), 'longer than 128 characters'],
      [7, 'expected a string, got 7'],
    ];
    for (const [v, reason] of cases) {
      const e = errorOf(() => validatePackageName(v));
      expect(e.code).toBe('bad-input');
      expect(e.message).toBe(`package name ${printable(v)}: ${nameProblem(v)}`);
      expect(e.message).toContain(reason);
      expect(errorOf(() => validateVersion(v)).message).toMatch(/^package version /);
    }
    expect(errorOf(() => validatePackageName('a\u0000')).message).toBe(
      'package name "a\\u0000": only letters, digits and . _ + - are allowed',
    );
  });
});
