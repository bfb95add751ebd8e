#!/usr/bin/env node
// The netfenced / netfence entry point: the only place that installs signal
// handlers and calls process.exit.
import { configWarnings, createDaemon, createLogger, loadConfig, prepareDaemonProcess, DaemonError } from '@netfence/daemon';
import { EXIT, runCli, type StartDaemon } from './cli';

const startDaemon: StartDaemon = async ({ config, socket, detachOnExit, io }) => {
  let cfg;
  try {
    cfg = loadConfig({ file: config, overrides: { ...(socket ? { socket } : {}), ...(detachOnExit ? { detach_on_exit: true } : {}) } });
  } catch (e) {
    io.stderr(`${(e as Error).message}\n`);
    return EXIT.USAGE;
  }
  prepareDaemonProcess();
  const logger = createLogger(cfg.log_level);
  for (const warning of configWarnings(cfg)) logger.warn({ config: config ?? null }, warning);
  const daemon = createDaemon(cfg, { logger });
  try {
    await daemon.start();
  } catch (e) {
    logger.fatal({ err: e }, 'daemon failed to start');
    await daemon.close().catch(() => undefined);
    return e instanceof DaemonError && e.code === 'NETFENCE_ERR_CONFIG' ? EXIT.USAGE : EXIT.FAILED;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ signal }, 'shutting down');
  const timer = setTimeout(() => {
    logger.error({ timeoutMs: cfg.shutdown_timeout }, 'shutdown timed out');
    process.exit(EXIT.FAILED);
  }, cfg.shutdown_timeout);
  timer.unref();
  await daemon.close();
  clearTimeout(timer);
  return EXIT.OK;
};

runCli(process.argv.slice(2), { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s), env: process.env }, startDaemon).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`netfenced: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(EXIT.FAILED);
  },
);
