Console.Error.WriteLine("usage: dotnet run -c Release --project bench/KvDb.Bench -- SUITE");
return 2;
