using KvDb.Kernels;
using KvDb.Store;
using KvDb.Workload;

namespace KvDb.TestKit;

/// <summary>Loading synthetic K/V into a store for tests and benches.</summary>
public static class StoreLoading
{
    /// <summary>
    /// Appends tokens [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) of
    /// <paramref name="workload"/> — its token ids and its keys and values in <paramref name="dtype"/> — to one
    /// layer of <paramref name="context"/>, in one committed transaction.
    /// </summary>
    public static void AppendWorkload(this IKvStore store, string context, SyntheticWorkload workload, KvDType dtype, long start, int count, int layer = 0)
    {
        var ids = new int[count];
        workload.FillTokenIds(start, ids);
        using IAppendTransaction tx = store.BeginAppend(context);
        tx.Append(layer, ids, workload.KeyBytes(dtype, start, count), workload.ValueBytes(dtype, start, count));
        tx.Commit();
    }
}
