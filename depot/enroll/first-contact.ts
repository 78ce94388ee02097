/** Moved to src/net/first-contact.ts (agents use it too); kept so depot imports keep working. */
export * from '../../src/net/first-contact.js';
