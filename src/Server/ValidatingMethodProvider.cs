using System.Reflection;
using Google.Protobuf;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;

namespace KvDb.Server;

/// <summary>
/// Binds every gRPC service's methods (in place of Grpc.AspNetCore's binder) with a request marshaller that turns an
/// unparseable request into INVALID_ARGUMENT. A unary call's request is deserialized before any interceptor runs, so
/// <see cref="ErrorMappingInterceptor"/> never sees its <see cref="InvalidProtocolBufferException"/>, and Grpc.AspNetCore
/// answered such a body with UNKNOWN ("Exception was thrown by handler"), as if the server had failed. Found by the
/// request fuzzer (fuzz/Requests): corrupted request bytes on Attend, GetContext, CreateModel, LookupPrefix.
/// </summary>
internal sealed class ValidatingMethodProvider<TService> : IServiceMethodProvider<TService>
    where TService : class
{
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<TService> context)
    {
        // The generated base class (e.g. Contexts.ContextsBase) is nested in a class with BindService(ServiceBinderBase, Base).
        for (Type? type = typeof(TService); type is not null; type = type.BaseType)
        {
            MethodInfo? bind = type.DeclaringType?.GetMethod("BindService", BindingFlags.Public | BindingFlags.Static, [typeof(ServiceBinderBase), type]);
            if (bind is not null)
            {
                bind.Invoke(null, [new Binder(context), null]);
                return;
            }
        }
    }

    private static Method<TRequest, TResponse> Validating<TRequest, TResponse>(Method<TRequest, TResponse> method)
        where TRequest : class
        where TResponse : class
    {
        Func<DeserializationContext, TRequest> parse = method.RequestMarshaller.ContextualDeserializer;
        var request = new Marshaller<TRequest>(method.RequestMarshaller.ContextualSerializer, context =>
        {
            try
            {
                return parse(context);
            }
            catch (InvalidProtocolBufferException e)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, "the request is not a valid protobuf message: " + e.Message));
            }
        });
        return new Method<TRequest, TResponse>(method.Type, method.ServiceName, method.Name, request, method.ResponseMarshaller);
    }

    /// <summary>The service's public method of that name as an open-instance delegate (what Grpc.AspNetCore's binder creates).</summary>
    private static TDelegate Handler<TDelegate>(string name)
        where TDelegate : Delegate =>
        (TDelegate)Delegate.CreateDelegate(typeof(TDelegate), typeof(TService).GetMethod(name, BindingFlags.Public | BindingFlags.Instance)
            ?? throw new InvalidOperationException($"{typeof(TService).Name} does not implement {name}"));

    /// <summary>The endpoint metadata Grpc.AspNetCore's binder gives a method: the service's attributes, then the method's.</summary>
    private static List<object> Metadata(string name) =>
        [.. typeof(TService).GetCustomAttributes(inherit: true), .. typeof(TService).GetMethod(name, BindingFlags.Public | BindingFlags.Instance)!.GetCustomAttributes(inherit: true)];

    private sealed class Binder(ServiceMethodProviderContext<TService> context) : ServiceBinderBase
    {
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler) =>
            context.AddUnaryMethod(Validating(method), Metadata(method.Name), Handler<UnaryServerMethod<TService, TRequest, TResponse>>(method.Name));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) =>
            context.AddClientStreamingMethod(Validating(method), Metadata(method.Name), Handler<ClientStreamingServerMethod<TService, TRequest, TResponse>>(method.Name));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler) =>
            context.AddServerStreamingMethod(Validating(method), Metadata(method.Name), Handler<ServerStreamingServerMethod<TService, TRequest, TResponse>>(method.Name));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler) =>
            context.AddDuplexStreamingMethod(Validating(method), Metadata(method.Name), Handler<DuplexStreamingServerMethod<TService, TRequest, TResponse>>(method.Name));
    }
}
