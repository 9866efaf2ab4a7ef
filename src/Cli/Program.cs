using KvDb.Cli;

return await CliApp.RunAsync(args).ConfigureAwait(false);
